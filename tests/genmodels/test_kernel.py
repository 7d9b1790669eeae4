"""NumPy step kernel: textbook LSTM maths, state carried per stream, batch independence.

(The comparison with the Keras model itself is in test_keras_parity.py, which needs
TensorFlow; this file checks the kernel's rewrites against a plain NumPy reference.)
"""
import numpy as np
import pytest

from genmodels.kernel import NumpyLSTM


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_logits(weights, cfg, ids):
    """Straightforward float64 LSTM in Keras layout (gates i, f, c, o): (B, T, V)."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    batch, steps = ids.shape
    hid = cfg.hidden
    h = [np.zeros((batch, hid)) for _ in range(cfg.n_layers)]
    c = [np.zeros((batch, hid)) for _ in range(cfg.n_layers)]
    out = np.zeros((batch, steps, cfg.vocab_size))
    for t in range(steps):
        x = w["embedding"][ids[:, t]]
        for i in range(cfg.n_layers):
            z = x @ w[f"lstm_{i}/kernel"] + h[i] @ w[f"lstm_{i}/recurrent_kernel"] \
                + w[f"lstm_{i}/bias"]
            gi, gf, gc, go = np.split(z, 4, axis=-1)
            c[i] = _sigmoid(gf) * c[i] + _sigmoid(gi) * np.tanh(gc)
            h[i] = _sigmoid(go) * np.tanh(c[i])
            x = h[i]
        out[:, t] = x @ w["dense/kernel"] + w["dense/bias"]
    return out


@pytest.mark.parametrize("n_layers,hidden,batch", [(1, 8, 1), (2, 8, 3), (3, 12, 4)])
def test_kernel_matches_a_textbook_lstm(artifact_factory, n_layers, hidden, batch):
    art = artifact_factory(n_layers=n_layers, hidden=hidden, seed=n_layers, scale=0.8)
    ids = np.random.default_rng(1).integers(0, len(art.vocab), (batch, 15))
    logits, _ = NumpyLSTM(art.weights, art.model_config).run(ids)
    assert logits.shape == (batch, 15, len(art.vocab))
    assert logits.dtype == np.float32
    want = reference_logits(art.weights, art.model_config, ids)
    np.testing.assert_allclose(logits, want, atol=1e-5, rtol=1e-5)
    assert np.ptp(want) > 1.0  # non-trivial: the logits really vary


def test_state_is_carried_between_calls(artifact_factory):
    art = artifact_factory(seed=2)
    lstm = NumpyLSTM(art.weights, art.model_config)
    ids = np.random.default_rng(2).integers(0, len(art.vocab), (2, 12))
    whole, _ = lstm.run(ids)
    first, state = lstm.run(ids[:, :5])
    second, _ = lstm.run(ids[:, 5:], state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-6)
    # And the state matters: restarting from zero gives different logits.
    fresh, _ = lstm.run(ids[:, 5:])
    assert np.abs(fresh - second).max() > 1e-3


def test_streams_in_a_batch_are_independent(artifact_factory):
    art = artifact_factory(seed=3)
    lstm = NumpyLSTM(art.weights, art.model_config)
    ids = np.random.default_rng(3).integers(0, len(art.vocab), (4, 10))
    batched, _ = lstm.run(ids)
    for b in range(4):
        alone, _ = lstm.run(ids[b:b + 1])
        np.testing.assert_allclose(batched[b], alone[0], atol=1e-5)


def test_step_equals_run_and_reset_zeroes_one_stream(artifact_factory):
    art = artifact_factory(seed=4)
    lstm = NumpyLSTM(art.weights, art.model_config)
    ids = np.random.default_rng(4).integers(0, len(art.vocab), (3, 6))
    want, _ = lstm.run(ids)
    state = lstm.zero_state(3)
    assert state.batch == 3
    for t in range(6):
        np.testing.assert_allclose(lstm.step(ids[:, t], state), want[:, t], atol=1e-6)
    state.reset(1)
    assert all(not a[:, 1].any() for a in state.x + state.c)
    assert any(a[:, 0].any() for a in state.c)
    restarted = lstm.step(ids[:, 0], state)
    np.testing.assert_allclose(restarted[1], want[1, 0], atol=1e-6)


def test_kernel_does_not_modify_the_artifact_weights(artifact_factory):
    art = artifact_factory(seed=5)
    before = {k: v.copy() for k, v in art.weights.items()}
    lstm = NumpyLSTM(art.weights, art.model_config)
    lstm.run(np.zeros((2, 4), dtype=int))
    for k, v in before.items():
        np.testing.assert_array_equal(art.weights[k], v)
