"""Vectorised sampling for a batch of streams, each with its own params and seed stream.

``choose_batch`` is ``genmodels.sampler.choose`` applied to every row of a (B, V) logits
matrix at once: the same float32 operations in the same order per row (temperature as a
float32 scale, the k-th largest value as top-k threshold, a stable descending sort and a
sequential float32 cumsum for top-p, Gumbel-max), so a row picks what the single-stream
sampler would pick from the same logits and noise.

``NoiseBank`` keeps each stream's PCG64 generator and draws its Gumbel noise in blocks
of ``sampler._NOISE_BLOCK`` rows exactly as ``Sampler.generate`` does, so stream n's
character i uses the same noise row whether it runs alone or among 255 others.

    from genmodels.batch_sampling import RowParams, choose_batch, NoiseBank
"""
from __future__ import annotations

import numpy as np

from genmodels.sampler import _NOISE_BLOCK as BLOCK, gumbel_block

F32 = np.float32


class RowParams:
    """Per-row sampling parameters as arrays (B,): what ``choose_batch`` reads."""

    def __init__(self, temperature, top_k, top_p):
        self.temperature = np.asarray(temperature, np.float64)
        self.top_k = np.asarray(top_k, np.int64)
        self.top_p = np.asarray(top_p, np.float64)
        greedy = self.temperature == 0.0
        # The single-stream code scales by np.float32(1.0 / T): same number here.
        self.scale = np.where(greedy, 1.0, 1.0 / np.where(greedy, 1.0, self.temperature)
                              ).astype(F32)
        self.greedy = greedy
        # Flags that let the common case (temperature only) skip whole passes.
        self.any_greedy, self.all_greedy = bool(greedy.any()), bool(greedy.all())
        self.any_top_k = bool((self.top_k > 0).any())
        self.any_top_p = bool((self.top_p < 1.0).any())

    def take(self, rows: np.ndarray) -> RowParams:
        return RowParams(self.temperature[rows], self.top_k[rows], self.top_p[rows])


def _top_k(z: np.ndarray, k: np.ndarray) -> None:
    """Remove, per row, every value below the row's k-th largest (in place)."""
    size = z.shape[1]
    rows = np.flatnonzero((k > 0) & (k < size))
    if rows.size == 0:
        return
    sub = z[rows]
    # np.partition(z, size - k)[size - k] is the (size - k)-th smallest: a full sort
    # gives the same value, and lets each row use its own k.
    kth = np.sort(sub, axis=1)[np.arange(rows.size), size - k[rows]]
    sub[sub < kth[:, None]] = -np.inf
    z[rows] = sub


def _top_p(z: np.ndarray, top_p: np.ndarray) -> None:
    """Nucleus filter per row (in place), as ``sampler.choose`` computes it."""
    rows = np.flatnonzero(top_p < 1.0)
    if rows.size == 0:
        return
    sub = z[rows]
    p = np.exp(sub - sub.max(axis=1, keepdims=True))
    order = np.argsort(-p, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)  # sequential per row
    threshold = top_p[rows].astype(F32) * cum[:, -1]  # python float * float32 -> float32
    keep = (cum < threshold[:, None]).sum(axis=1) + 1  # searchsorted(cum, thr) + 1
    drop = np.arange(sub.shape[1])[None, :] >= keep[:, None]
    remove = np.zeros_like(drop)
    np.put_along_axis(remove, order, drop, axis=1)
    sub[remove] = -np.inf
    z[rows] = sub


def choose_batch(logits: np.ndarray, params: RowParams, gumbel: np.ndarray) -> np.ndarray:
    """Next id per row from (B, V) float32 logits and (B, V) float32 Gumbel noise."""
    if params.all_greedy:
        return np.argmax(logits, axis=1)
    if params.any_greedy:  # a mixed batch: greedy rows on the raw logits, then the rest
        out = np.argmax(logits, axis=1)
        rows = np.flatnonzero(~params.greedy)
        out[rows] = choose_batch(logits[rows], params.take(rows), gumbel[rows])
        return out
    z = logits * params.scale[:, None]
    if params.any_top_k:
        _top_k(z, params.top_k)
    if params.any_top_p:
        _top_p(z, params.top_p)
    z += gumbel
    return np.argmax(z, axis=1)


class NoiseBank:
    """Gumbel noise for up to ``capacity`` slots, one PCG64 stream per slot.

    Memory grows with the slots actually used (capacity x 256 x V float32 at most), so
    an idle model costs nothing here.
    """

    def __init__(self, vocab_size: int, capacity: int):
        self.vocab_size, self.capacity = vocab_size, capacity
        self._buf = np.zeros((0, BLOCK, vocab_size), F32)
        self._rngs: list[np.random.Generator | None] = [None] * capacity

    def open(self, slot: int, seed: int) -> None:
        if slot >= self._buf.shape[0]:
            grown = min(self.capacity, max(slot + 1, 2 * self._buf.shape[0], 4))
            buf = np.zeros((grown, BLOCK, self.vocab_size), F32)
            buf[:self._buf.shape[0]] = self._buf
            self._buf = buf
        self._rngs[slot] = np.random.Generator(np.random.PCG64(seed))

    def close(self, slot: int) -> None:
        self._rngs[slot] = None

    def rows(self, slots: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Noise row for character ``n[i]`` of slot ``slots[i]`` -> (B, V)."""
        pos = n % BLOCK
        fresh = pos == 0
        if fresh.any():
            for i in np.flatnonzero(fresh):  # a fresh block, drawn as Sampler draws it
                slot = slots[i]
                self._buf[slot] = gumbel_block(self._rngs[slot], self.vocab_size)
        # One flat take is several times cheaper than 2-D fancy indexing for small B.
        flat = self._buf.reshape(-1, self.vocab_size)
        return flat.take(slots * BLOCK + pos, axis=0)
