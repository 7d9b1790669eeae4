"""NumPy LSTM step kernel: one character step for B streams, carrying (h, c) per stream.

This is the CPU inference path; it reproduces the Keras model's logits (tests check
1e-5) without importing TensorFlow. Three rewrites make one step cheap:

* the embedding and the first layer's input projection are folded into one table,
  ``table0 = embedding @ W0 + b0``, so layer 0's input costs a row lookup, not a matmul;
* gates are reordered (i, f, o, c) and the i, f, o pre-activations halved, so a single
  ``tanh`` over all 4H values yields every gate: sigmoid(x) = 0.5 + 0.5 * tanh(x / 2);
* activations are kept in column layout (features x streams), so for one stream each
  layer is a single matrix-vector product with a contiguous matrix, and a deeper
  layer's input and recurrent weights are stacked so [x; h] needs one product.

Usage::

    lstm = NumpyLSTM(artifact.weights, artifact.model_config)
    state = lstm.start_state(batch=4)   # the artifact's warmed start, or zeros
    logits = lstm.step(np.array([3, 1, 4, 1]), state)   # (4, vocab); state advances
"""
from __future__ import annotations

import numpy as np

from genmodels.config import ModelConfig

F32 = np.float32


class State:
    """Per-stream LSTM state in column layout; row blocks are contiguous views.

    ``x[i]`` holds layer i's input stacked on its own h: ``[h_{i-1}; h_i]`` (layer 0
    holds just h_0, its input comes from the table). ``c[i]`` is the cell state.
    """

    def __init__(self, cfg: ModelConfig, batch: int, start: list[np.ndarray] | None = None):
        hid = cfg.hidden
        self.hidden = hid
        self.x = [np.zeros(((hid if i else 0) + hid, batch), F32) for i in range(cfg.n_layers)]
        self.c = [np.zeros((hid, batch), F32) for _ in range(cfg.n_layers)]
        # Column vectors matching x + c that a fresh stream starts from (None: zeros).
        self.start = start
        if start is not None:
            self.reset()

    @property
    def batch(self) -> int:
        return self.c[0].shape[1]

    def h(self, layer: int) -> np.ndarray:
        """Hidden state of ``layer`` as (hidden, batch)."""
        return self.x[layer][-self.hidden:]

    def reset(self, cols=slice(None)) -> None:
        """Put the given streams (columns) back to the start state."""
        if isinstance(cols, (int, np.integer)):
            cols = [cols]  # keep the column axis, so start vectors broadcast
        for i, a in enumerate(self.x + self.c):
            a[:, cols] = 0.0 if self.start is None else self.start[i]

    def resize(self, keep: np.ndarray, add: int) -> None:
        """Keep the columns ``keep`` (in that order), then append ``add`` fresh streams."""
        arrays = self.x + self.c
        for i, a in enumerate(arrays):
            kept = a[:, keep]
            if add:
                fresh = np.zeros((a.shape[0], add), a.dtype)
                fresh[:] = 0.0 if self.start is None else self.start[i]
                kept = np.hstack([kept, fresh])
            arrays[i] = np.ascontiguousarray(kept)
        n = len(self.x)
        self.x, self.c = arrays[:n], arrays[n:]


def _start_columns(w: dict[str, np.ndarray], cfg: ModelConfig) -> list[np.ndarray] | None:
    """The stored start state as column vectors laid out like ``State.x + State.c``."""
    if "start/h_0" not in w:
        return None
    h = [w[f"start/h_{i}"].astype(F32) for i in range(cfg.n_layers)]
    xs = [h[0]] + [np.concatenate([h[i - 1], h[i]]) for i in range(1, cfg.n_layers)]
    cs = [w[f"start/c_{i}"].astype(F32) for i in range(cfg.n_layers)]
    return [v[:, None].copy() for v in xs + cs]


class NumpyLSTM:
    """Inference-only LSTM built from artifact weights (Keras layout, gates i, f, c, o)."""

    def __init__(self, weights: dict[str, np.ndarray], cfg: ModelConfig):
        self.cfg = cfg
        hid = cfg.hidden
        # Keras order i, f, c, o -> i, f, o, c; halve i, f, o for the tanh-sigmoid trick.
        perm = np.r_[0:2 * hid, 3 * hid:4 * hid, 2 * hid:3 * hid]
        scale = np.r_[np.full(3 * hid, 0.5, F32), np.ones(hid, F32)].astype(F32)

        def prep(mat):
            return (np.asarray(mat, F32)[..., perm] * scale).astype(F32)

        w = {k: np.asarray(v, F32) for k, v in weights.items()}
        self.table0 = prep(w["embedding"] @ w["lstm_0/kernel"] + w["lstm_0/bias"])  # (V, 4H)
        self._table0_cols = self.table0[:, :, None]  # (V, 4H, 1): one stream, no transpose
        # Transposed, C-contiguous weights: z = W^T @ [x; h] in column layout.
        self.rec0_t = np.ascontiguousarray(prep(w["lstm_0/recurrent_kernel"]).T)
        self.stack_t, self.bias = [], []
        for i in range(1, cfg.n_layers):
            stacked = np.vstack([w[f"lstm_{i}/kernel"], w[f"lstm_{i}/recurrent_kernel"]])
            self.stack_t.append(np.ascontiguousarray(prep(stacked).T))
            self.bias.append(prep(w[f"lstm_{i}/bias"])[:, None].copy())
        self.dense_t = np.ascontiguousarray(w["dense/kernel"].T)  # (V, H)
        self.dense_b = w["dense/bias"][:, None].copy()
        self.start = _start_columns(w, cfg)

    def zero_state(self, batch: int = 1) -> State:
        return State(self.cfg, batch)

    def start_state(self, batch: int = 1) -> State:
        """Where generation begins: the artifact's warmed state if it has one, else zeros.

        Training never shows the model a zero state mid-text, so an artifact stores the
        state reached after reading real text (``genmodels.artifact.START_KEYS``).
        """
        return State(self.cfg, batch, self.start)

    def _cell(self, z: np.ndarray, state: State, layer: int) -> None:
        """Gate non-linearities and the (h, c) update, in place. z: (4H, B) pre-acts."""
        hid = self.cfg.hidden
        np.tanh(z, out=z)
        ifo = z[:3 * hid]
        ifo *= 0.5
        ifo += 0.5
        c = state.c[layer]
        c *= z[hid:2 * hid]  # forget gate
        g = z[3 * hid:]
        g *= z[:hid]  # input gate * candidate
        c += g
        h = state.h(layer)
        np.tanh(c, out=h)
        h *= z[2 * hid:3 * hid]  # output gate

    def step_columns(self, ids: np.ndarray, state: State) -> np.ndarray:
        """Advance every stream by one character; returns logits as (vocab, batch)."""
        z = self.rec0_t @ state.x[0]
        z += self._table0_cols[ids[0]] if len(ids) == 1 else self.table0[ids].T
        self._cell(z, state, 0)
        for i in range(1, self.cfg.n_layers):
            state.x[i][:self.cfg.hidden] = state.h(i - 1)
            z = self.stack_t[i - 1] @ state.x[i]
            z += self.bias[i - 1]
            self._cell(z, state, i)
        out = self.dense_t @ state.h(self.cfg.n_layers - 1)
        out += self.dense_b
        return out

    def step(self, ids, state: State) -> np.ndarray:
        """Advance every stream by one character; returns logits as (batch, vocab)."""
        return self.step_columns(np.asarray(ids, dtype=np.intp), state).T

    def run(self, ids, state: State | None = None) -> tuple[np.ndarray, State]:
        """Feed a (batch, time) id array; returns logits (batch, time, vocab) and state."""
        ids = np.atleast_2d(np.asarray(ids, dtype=np.intp))
        state = state or self.zero_state(ids.shape[0])
        out = np.empty((ids.shape[0], ids.shape[1], self.cfg.vocab_size), F32)
        for t in range(ids.shape[1]):
            out[:, t] = self.step(ids[:, t], state)
        return out, state
