"""Held-out loss of a model, in nats/char and bits/char, computed with the NumPy kernel.

The held-out ids are cut into ``streams`` contiguous pieces that are read in parallel,
each carrying its LSTM state from character to character, exactly as the sampler does:
every held-out character after the first of each piece is a target. Memory stays
bounded (ids are memory-mapped; one step of state per stream), so any corpus size works.
Using the NumPy kernel means we score the shipped weights themselves (after rounding).

    python -m training evaluate STYLE   # last line: val_loss_nats=<f> bits_per_char=<f>
"""
from __future__ import annotations

import math

import numpy as np

from genmodels.config import ModelConfig
from genmodels.kernel import NumpyLSTM

NATS_PER_BIT = math.log(2)


def val_loss(weights: dict[str, np.ndarray], cfg: ModelConfig, ids: np.ndarray,
             streams: int = 128, limit: int | None = None) -> float:
    """Mean cross-entropy (nats/char) of the model on ``ids``; ``limit`` caps the chars."""
    ids = ids[:limit] if limit else ids
    streams = max(1, min(streams, len(ids) // 2))
    steps = len(ids) // streams
    grid = np.asarray(ids[:streams * steps]).astype(np.intp).reshape(streams, steps)
    lstm = NumpyLSTM(weights, cfg)
    state = lstm.zero_state(streams)
    cols = np.arange(streams)
    total = 0.0
    for t in range(steps - 1):
        logits = lstm.step_columns(grid[:, t], state).astype(np.float64)  # (V, B)
        top = logits.max(axis=0)
        lse = top + np.log(np.exp(logits - top).sum(axis=0))
        total += float((lse - logits[grid[:, t + 1], cols]).sum())
    return total / (streams * (steps - 1))


def bits(nats: float) -> float:
    return nats / NATS_PER_BIT
