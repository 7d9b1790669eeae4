"""TensorFlow step for the batching engine: one ``tf.function`` LSTM step for B streams.

Used when a GPU is visible (``engine.make_backend(art, "auto")``) or when asked for
(``backend = "tensorflow"`` in config.toml's ``[inference]``). It computes the same
logits as ``genmodels.kernel.NumpyLSTM`` (tests check 1e-4 on the CPU) from the same
artifact weights, with the state kept on the device as (rows, hidden) tensors.

TensorFlow is imported only inside ``TFBackend`` and ``gpu_visible`` (and the latter only
when the machine shows an NVIDIA device), so importing this module, the engine or the
service on a CPU-only machine never loads TensorFlow.

    python bench/gpu_check.py     # TF batched step vs NumPy at batch 1/64/256, one JSON line
"""
from __future__ import annotations

import glob
import importlib.util
import os

import numpy as np

from genmodels.artifact import Artifact


def _nvidia_device_present() -> bool:
    """A cheap look for a GPU without importing TensorFlow."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or glob.glob("/proc/driver/nvidia/gpus/*"))


def gpu_visible() -> bool:
    """True when TensorFlow is installed and sees a GPU (TF imported only if one may)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1") or not _nvidia_device_present():
        return False
    if importlib.util.find_spec("tensorflow") is None:
        return False
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


class TFState:
    """Per-layer (h, c) tensors of shape (rows, hidden), replaced at every step."""

    def __init__(self, h: list, c: list):
        self.h, self.c = h, c

    @property
    def batch(self) -> int:
        return int(self.h[0].shape[0])


class TFBackend:
    """Same interface as ``batch.NumpyBackend``: ``new_state``, ``step``, ``resize``."""

    name = "tensorflow"

    def __init__(self, art: Artifact, device: str | None = None):
        import tensorflow as tf

        self.tf, self.cfg = tf, art.model_config
        self.device = device or ("/GPU:0" if tf.config.list_physical_devices("GPU")
                                 else "/CPU:0")
        w = art.weights
        n, hid = self.cfg.n_layers, self.cfg.hidden
        with tf.device(self.device):
            const = lambda a: tf.constant(np.asarray(a, np.float32))  # noqa: E731
            self.emb = const(w["embedding"])
            self.kernels = [const(w[f"lstm_{i}/kernel"]) for i in range(n)]
            self.recs = [const(w[f"lstm_{i}/recurrent_kernel"]) for i in range(n)]
            self.biases = [const(w[f"lstm_{i}/bias"]) for i in range(n)]
            self.dense, self.dense_b = const(w["dense/kernel"]), const(w["dense/bias"])
            # One (1, hidden) row per h then c of each layer: the artifact's start state.
            self.start = [const(np.asarray(w.get(f"start/{k}_{i}", np.zeros(hid)))[None])
                          for k in "hc" for i in range(n)]
        spec = tf.TensorSpec([None, hid], tf.float32)
        # One trace for every batch size: the row dimension is left open.
        self._step = tf.function(self._step_impl, input_signature=[
            tf.TensorSpec([None], tf.int32), [spec] * n, [spec] * n], jit_compile=False)

    def _step_impl(self, ids, hs, cs):
        tf = self.tf
        x = tf.gather(self.emb, ids)
        new_h, new_c = [], []
        for i in range(self.cfg.n_layers):  # Keras gate order: i, f, c, o
            z = tf.matmul(x, self.kernels[i]) + tf.matmul(hs[i], self.recs[i]) + self.biases[i]
            gi, gf, gc, go = tf.split(z, 4, axis=1)
            c = tf.sigmoid(gf) * cs[i] + tf.sigmoid(gi) * tf.tanh(gc)
            h = tf.sigmoid(go) * tf.tanh(c)
            new_h.append(h)
            new_c.append(c)
            x = h
        return tf.matmul(x, self.dense) + self.dense_b, new_h, new_c

    def new_state(self, n: int) -> TFState:
        tf = self.tf
        with tf.device(self.device):
            rows = [tf.tile(row, [n, 1]) for row in self.start]
        return TFState(rows[:self.cfg.n_layers], rows[self.cfg.n_layers:])

    def step(self, ids: np.ndarray, state: TFState) -> np.ndarray:
        """(n,) ids -> (n, V) float32 logits on the host; the state advances on device."""
        with self.tf.device(self.device):
            logits, state.h, state.c = self._step(np.asarray(ids, np.int32), state.h, state.c)
        return np.ascontiguousarray(logits.numpy())

    def resize(self, state: TFState, keep: np.ndarray, add: int) -> TFState:
        """Keep rows ``keep`` (in that order), then append ``add`` fresh rows."""
        tf, n = self.tf, self.cfg.n_layers
        idx = np.asarray(keep, np.int32)
        with tf.device(self.device):
            def fix(t, start):
                kept = tf.gather(t, idx)
                return tf.concat([kept, tf.tile(start, [add, 1])], 0) if add else kept
            return TFState([fix(t, s) for t, s in zip(state.h, self.start[:n], strict=True)],
                           [fix(t, s) for t, s in zip(state.c, self.start[n:], strict=True)])
