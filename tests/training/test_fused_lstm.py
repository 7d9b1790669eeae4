"""FusedLSTM (hand-written backward pass) must equal keras.layers.LSTM, values and gradients."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from genmodels.config import ModelConfig  # noqa: E402
from training.fused_lstm import FusedLSTM  # noqa: E402
from training.keras_model import build_model, get_weights, set_weights  # noqa: E402


def _outputs_and_grads(layer, x, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * dy)
    return [np.asarray(y)] + [np.asarray(g) for g in
                              tape.gradient(loss, [x] + layer.trainable_variables)]


def test_fused_lstm_matches_keras_lstm_values_and_gradients():
    rng = np.random.default_rng(0)
    batch, steps, n_in, units = 3, 9, 5, 7
    x = tf.constant(rng.standard_normal((batch, steps, n_in)).astype(np.float32))
    dy = tf.constant(rng.standard_normal((batch, steps, units)).astype(np.float32))
    ref = keras.layers.LSTM(units, return_sequences=True)
    fused = FusedLSTM(units)
    ref.build(x.shape)
    fused.build(x.shape)
    weights = [w + rng.normal(0, 0.3, w.shape).astype(np.float32) for w in ref.get_weights()]
    ref.set_weights(weights)
    fused.set_weights(weights)
    for got, want in zip(_outputs_and_grads(fused, x, dy), _outputs_and_grads(ref, x, dy),
                         strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_fused_and_plain_models_share_weights_and_initial_forget_bias():
    cfg = ModelConfig(vocab_size=11, embed_dim=4, hidden=6, n_layers=2)
    fused, plain = build_model(cfg, fused=True), build_model(cfg, fused=False)
    bias = get_weights(fused, cfg)["lstm_0/bias"]
    np.testing.assert_array_equal(bias[6:12], np.ones(6))  # forget gate starts open
    np.testing.assert_array_equal(bias[:6], np.zeros(6))
    set_weights(plain, cfg, get_weights(fused, cfg))
    ids = np.random.default_rng(1).integers(0, 11, (2, 13))
    np.testing.assert_allclose(fused.predict(ids, verbose=0), plain.predict(ids, verbose=0),
                               atol=1e-5)


def test_under_mixed_bfloat16_the_model_computes_in_bfloat16_and_keeps_float32_weights():
    cfg = ModelConfig(vocab_size=11, embed_dim=4, hidden=6, n_layers=2)
    reference = build_model(cfg)
    mixed = build_model(cfg, precision="mixed_bfloat16")
    assert mixed.get_layer("lstm_0").compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was
    set_weights(mixed, cfg, get_weights(reference, cfg))
    weights = get_weights(mixed, cfg)
    assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}
    ids = np.random.default_rng(2).integers(0, 11, (2, 13))
    got, want = mixed.predict(ids, verbose=0), reference.predict(ids, verbose=0)
    assert got.dtype == np.float32  # the logits layer stays float32 for the loss
    # bfloat16 keeps 8 bits of mantissa: close to the float32 model, not equal to it.
    np.testing.assert_allclose(got, want, atol=0.05)
    assert not np.allclose(got, want, atol=1e-6)
