"""The Keras definition of the char-LSTM, and weight transfer to/from artifact arrays.

Imported by training only, as it imports TensorFlow/Keras: the sampler and the engine
step the same arrays with ``genmodels.kernel`` (or ``serving/tf_backend.py`` on a GPU),
so the chat side never loads Keras.
"""
from __future__ import annotations

import keras
import numpy as np

from genmodels.config import ModelConfig
from training.fused_lstm import FusedLSTM


def build_model(cfg: ModelConfig, fused: bool = True,
                precision: str = "float32") -> keras.Model:
    """Embedding -> n x LSTM (every position returns) -> Dense logits; any length.

    ``fused`` uses ``FusedLSTM`` (same maths and weights, a faster CPU backward pass);
    ``fused=False`` uses ``keras.layers.LSTM`` itself (cuDNN on a GPU). ``precision`` is
    the Keras dtype policy its layers take (``TrainConfig.precision``); the process's
    global policy is left as it was.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        return _build(cfg, fused)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _build(cfg: ModelConfig, fused: bool) -> keras.Model:
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(cfg.vocab_size, cfg.embed_dim, name="embedding")(ids)
    for i in range(cfg.n_layers):
        if i and cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
        if fused:
            x = FusedLSTM(cfg.hidden, name=f"lstm_{i}")(x)
        else:
            x = keras.layers.LSTM(cfg.hidden, return_sequences=True, name=f"lstm_{i}")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="dropout_out")(x)
    # float32 logits whatever the compute precision: the softmax and loss need the range.
    logits = keras.layers.Dense(cfg.vocab_size, name="dense", dtype="float32")(x)
    return keras.Model(ids, logits, name="char_lstm")


def get_weights(model: keras.Model, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Artifact-named arrays from a built model."""
    out = {"embedding": model.get_layer("embedding").get_weights()[0]}
    for i in range(cfg.n_layers):
        kernel, rec, bias = model.get_layer(f"lstm_{i}").get_weights()
        out |= {f"lstm_{i}/kernel": kernel, f"lstm_{i}/recurrent_kernel": rec,
                f"lstm_{i}/bias": bias}
    kernel, bias = model.get_layer("dense").get_weights()
    return out | {"dense/kernel": kernel, "dense/bias": bias}


def set_weights(model: keras.Model, cfg: ModelConfig, weights: dict[str, np.ndarray]) -> None:
    """Load artifact-named arrays into a built model."""
    model.get_layer("embedding").set_weights([weights["embedding"]])
    for i in range(cfg.n_layers):
        model.get_layer(f"lstm_{i}").set_weights(
            [weights[f"lstm_{i}/{k}"] for k in ("kernel", "recurrent_kernel", "bias")])
    model.get_layer("dense").set_weights([weights["dense/kernel"], weights["dense/bias"]])
