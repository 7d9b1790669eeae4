"""The TensorFlow batched step gives the NumPy kernel's logits (1e-4), on the CPU here;
rows join and leave (resize) the same way in both backends."""
import numpy as np
import pytest

from serving.batch import NumpyBackend

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.timeout(180)


def test_tf_step_matches_numpy_through_joins_and_leaves(artifact_factory):
    from serving.tf_backend import TFBackend

    art = artifact_factory(hidden=16, embed_dim=6, n_layers=2, seed=5, scale=0.7)
    tf_b, np_b = TFBackend(art, device="/CPU:0"), NumpyBackend(art)
    rng = np.random.default_rng(0)
    s_tf, s_np = tf_b.new_state(3), np_b.new_state(3)
    worst = 0.0
    for t in range(30):
        if t == 10:  # row 1 leaves, two rows join
            keep = np.array([0, 2])
            s_tf, s_np = tf_b.resize(s_tf, keep, 2), np_b.resize(s_np, keep, 2)
        if t == 20:  # only the newest row stays
            keep = np.array([3])
            s_tf, s_np = tf_b.resize(s_tf, keep, 0), np_b.resize(s_np, keep, 0)
        ids = rng.integers(0, len(art.vocab), s_np.batch)
        a, b = tf_b.step(ids, s_tf), np_b.step(ids, s_np)
        assert a.shape == b.shape == (s_np.batch, len(art.vocab))
        worst = max(worst, float(np.abs(a - b).max()))
    assert worst < 1e-4, worst


def test_engine_runs_on_the_tf_backend_when_asked(artifact_factory, tmp_path):
    from genmodels.sampler import Sampler, SamplingParams
    from serving.engine import Engine

    art = artifact_factory(hidden=16, seed=2)
    art.save(tmp_path / "tiny")
    engine = Engine(paths={"tiny": art.path}, backend="tensorflow").start()
    try:
        p = SamplingParams(seed=1, max_chars=40, temperature=0.0, stop="none")
        got = engine.submit("tiny", "the ", p).result(timeout=120).sample
    finally:
        engine.stop()
    # Greedy: any logit difference (1e-4 here) would have to flip a clear argmax.
    assert got.text == Sampler(art).generate("the ", p).text
