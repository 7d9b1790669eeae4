"""The warmed start state stored in an artifact: where generation begins.

Training windows start mid-text, so a model never learns to continue from a zero
state; a sample that starts there writes worse text for its first few hundred
characters. The start state is the one the model reaches after reading
``WARM_CHARS`` characters of its training text that end just before a stop sequence
(a paragraph or line end), so the sampler, which feeds the stop sequence next, begins
as the model would after a real paragraph.

    art.weights |= start_state(art.weights, art.model_config, train_ids, stop_ids)
"""
from __future__ import annotations

import numpy as np

from genmodels.config import ModelConfig
from genmodels.kernel import NumpyLSTM

WARM_CHARS = 2000


def warm_end(ids: np.ndarray, stop_ids: list[int], warm: int = WARM_CHARS) -> int:
    """The last position where ``stop_ids`` begins with ``warm`` chars before it.

    Falls back to the end of the text when the stop sequence never occurs there.
    """
    ids = np.asarray(ids)
    n = len(stop_ids)
    if n == 0 or len(ids) < warm + n:
        return len(ids)
    hits = np.ones(len(ids) - n + 1, dtype=bool)
    for k, s in enumerate(stop_ids):
        hits &= ids[k:len(ids) - n + 1 + k] == s
    where = np.flatnonzero(hits[warm:]) + warm
    return int(where[-1]) if len(where) else len(ids)


def start_state(weights: dict[str, np.ndarray], cfg: ModelConfig, ids: np.ndarray,
                stop_ids: list[int], warm: int = WARM_CHARS) -> dict[str, np.ndarray]:
    """``start/{h,c}_<i>`` arrays: the state after the ``warm`` chars before a stop."""
    end = warm_end(ids, stop_ids, warm)
    text = np.asarray(ids[max(0, end - warm):end], dtype=np.intp)
    lstm = NumpyLSTM(weights, cfg)
    state = lstm.zero_state(1)
    step = np.zeros(1, dtype=np.intp)
    for i in text:
        step[0] = i
        lstm.step_columns(step, state)
    out = {}
    for i in range(cfg.n_layers):
        out[f"start/h_{i}"] = state.h(i)[:, 0].copy()
        out[f"start/c_{i}"] = state.c[i][:, 0].copy()
    return out
