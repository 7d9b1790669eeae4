"""The warmed start state: stored in the artifact, loaded, and where every sampler begins."""
import numpy as np
import pytest

from genmodels import artifact as artifacts
from genmodels.kernel import NumpyLSTM
from genmodels.sampler import Sampler, SamplingParams
from training import warm


def with_start(art, seed=3):
    rng = np.random.default_rng(seed)
    cfg = art.model_config
    art.weights |= {k: rng.standard_normal(shape).astype(np.float32) * 0.5
                    for k, shape in artifacts.start_shapes(cfg).items()}
    return art


def test_start_state_is_saved_loaded_and_gives_identical_logits(artifact_factory, tmp_path):
    art = with_start(artifact_factory(hidden=8, n_layers=2))
    ids = np.array(art.vocab.encode("the cat").ids)
    want = NumpyLSTM(art.weights, art.model_config).run(ids[None])[0]  # zero start
    lstm = NumpyLSTM(art.weights, art.model_config)
    expect, _ = lstm.run(ids[None], lstm.start_state(1))
    art.save(tmp_path / "m")
    back = artifacts.load(tmp_path / "m")
    for k in artifacts.start_shapes(art.model_config):
        np.testing.assert_array_equal(back.weights[k], art.weights[k])
    lstm2 = NumpyLSTM(back.weights, back.model_config)
    got, _ = lstm2.run(ids[None], lstm2.start_state(1))
    np.testing.assert_array_equal(got, expect)
    assert not np.allclose(got, want)  # the start state matters


def test_a_partial_start_state_is_refused(artifact_factory, tmp_path):
    art = with_start(artifact_factory())
    del art.weights["start/c_1"]
    with pytest.raises(artifacts.ArtifactError, match="start/c_1"):
        art.save(tmp_path / "m")


def test_fresh_streams_and_resets_begin_at_the_start_state(artifact_factory):
    art = with_start(artifact_factory(hidden=8))
    lstm = NumpyLSTM(art.weights, art.model_config)
    state = lstm.start_state(2)
    lstm.step(np.array([1, 2]), state)
    state.resize(np.array([1]), 2)  # keep stream 1, add two fresh ones
    fresh = lstm.start_state(1)
    for a, b in zip(state.x + state.c, fresh.x + fresh.c, strict=True):
        np.testing.assert_array_equal(a[:, 1:], np.repeat(b, 2, axis=1))
        assert not np.array_equal(a[:, :1], b)
    state.reset(0)
    for a, b in zip(state.x + state.c, fresh.x + fresh.c, strict=True):
        np.testing.assert_array_equal(a[:, :1], b)


def test_the_sampler_starts_from_the_stored_state(artifact_factory):
    plain = artifact_factory(hidden=8)
    warmed = with_start(artifact_factory(hidden=8))
    params = SamplingParams(temperature=0.0, max_chars=40, stop="none", seed=1)
    assert Sampler(plain).generate("", params).text != Sampler(warmed).generate("", params).text


def test_warm_start_reads_text_that_ends_just_before_a_stop():
    ids = np.array([5, 1, 1, 7, 7, 7, 1, 1, 2, 3, 4, 1, 1, 9])
    assert warm.warm_end(ids, [1, 1], warm=3) == 11  # the last "\n\n" with 3 chars before
    assert warm.warm_end(ids, [1, 1], warm=12) == len(ids)  # none that late: the end
    assert warm.warm_end(ids, [8], warm=2) == len(ids)


def test_start_state_equals_the_state_after_the_warm_text(artifact_factory):
    art = artifact_factory(hidden=8)
    ids = np.array(art.vocab.encode("the cat sat.\nthe dog.\n" * 3).ids)
    stop = art.vocab.encode("\n").ids
    start = warm.start_state(art.weights, art.model_config, ids, stop, warm=10)
    end = warm.warm_end(ids, stop, 10)
    lstm = NumpyLSTM(art.weights, art.model_config)
    _, state = lstm.run(ids[None, end - 10:end])
    np.testing.assert_allclose(start["start/h_1"], state.h(1)[:, 0])
    np.testing.assert_allclose(start["start/c_0"], state.c[0][:, 0])
