"""The NumPy kernel reproduces the Keras model's logits (1e-5), and weights round-trip."""
import numpy as np
import pytest

pytest.importorskip("tensorflow")
from genmodels.artifact import load  # noqa: E402
from genmodels.kernel import NumpyLSTM  # noqa: E402
from training.keras_model import build_model, get_weights, set_weights  # noqa: E402


@pytest.mark.parametrize("fused", [False, True], ids=["keras.LSTM", "FusedLSTM"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_numpy_kernel_matches_keras_logits(artifact_factory, fused, n_layers):
    art = artifact_factory(hidden=12, embed_dim=6, n_layers=n_layers, seed=20 + n_layers,
                           scale=0.7)
    model = build_model(art.model_config, fused=fused)
    set_weights(model, art.model_config, art.weights)
    ids = np.random.default_rng(n_layers).integers(0, len(art.vocab), (4, 25))
    want = np.asarray(model(ids.astype(np.int32), training=False))
    got, _ = NumpyLSTM(art.weights, art.model_config).run(ids)
    assert want.shape == got.shape == (4, 25, len(art.vocab))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.abs(want[:, 1:] - want[:, :-1]).max() > 0.5  # the logits really move


def test_dropout_is_off_at_inference(artifact_factory):
    from dataclasses import replace

    art = artifact_factory(hidden=8, n_layers=2, seed=30)
    cfg = replace(art.model_config, dropout=0.5)
    model = build_model(cfg)
    set_weights(model, cfg, art.weights)
    ids = np.random.default_rng(3).integers(0, len(art.vocab), (2, 10)).astype(np.int32)
    np.testing.assert_allclose(NumpyLSTM(art.weights, cfg).run(ids)[0],
                               np.asarray(model(ids, training=False)), atol=1e-5)


def test_keras_weights_round_trip_through_an_artifact(tmp_path, artifact_factory):
    art = artifact_factory(hidden=8, n_layers=2, seed=31)
    model = build_model(art.model_config)
    weights = get_weights(model, art.model_config)  # Keras' own initial weights
    assert set(weights) == set(art.weights)
    art.weights = weights
    art.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    rebuilt = build_model(loaded.model_config)
    set_weights(rebuilt, loaded.model_config, loaded.weights)
    ids = np.random.default_rng(4).integers(0, len(art.vocab), (3, 12)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(rebuilt(ids)), np.asarray(model(ids)))
    np.testing.assert_allclose(NumpyLSTM(loaded.weights, loaded.model_config).run(ids)[0],
                               np.asarray(model(ids)), atol=1e-5)
