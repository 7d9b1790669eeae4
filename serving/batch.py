"""One model version's batch: the rows (requests) stepping together, and the step itself.

A ``Batch`` holds every active request on one loaded model version in one LSTM state
(one column per request). Each ``step()`` advances every row by one character:

* a row still reading its context (stop sequence + prime, as ``Sampler.generate``
  feeds it) is fed its next context id and its logits are ignored;
* a row past its context samples its next id with its own params and seed stream
  (``genmodels.sampler.choose``), and finishes when its stop rule or length limit fires.

Rows join and leave between steps; the state is compacted so a step only computes the
live rows. ``serving.engine`` drives batches from its per-model thread.

    python -m pytest tests/serving/test_engine.py -q
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np

from genmodels.artifact import Artifact
from genmodels.kernel import NumpyLSTM
from genmodels.sampler import (
    STOP_RULES,
    NoiseBank,
    RowParams,
    Sample,
    SamplingParams,
    choose,
    start_context,
    stop_reached,
)
from serving.client import Result

CHUNK_CHARS = 16  # streaming granularity: one callback per this many characters


class NumpyBackend:
    """The CPU step: ``genmodels.kernel.NumpyLSTM`` with (features, rows) state."""

    name = "numpy"

    def __init__(self, art: Artifact):
        self.lstm = NumpyLSTM(art.weights, art.model_config)

    def new_state(self, n: int):
        return self.lstm.start_state(n)

    def step(self, ids: np.ndarray, state) -> np.ndarray:
        """(n,) ids -> (n, V) float32 logits, C-contiguous; the state advances."""
        return np.ascontiguousarray(self.lstm.step_columns(ids, state).T)

    def resize(self, state, keep: np.ndarray, add: int):
        """Keep the columns ``keep`` (in that order), then append ``add`` fresh streams."""
        state.resize(keep, add)
        return state


@dataclass(eq=False)
class Row:
    """One request inside a batch."""

    prime: str  # as submitted; once admitted, as the model reads it (unseen-char policy)
    dropped: str
    params: SamplingParams
    seed: int
    context: list[int]  # ids fed before sampling: stop sequence + prime
    future: Future
    submitted: float  # time.monotonic() at submit
    started: float = 0.0  # when the row joined a batch
    out: list[str] = field(default_factory=list)
    slot: int = -1
    on_chunk: Callable[[str], None] | None = None  # streaming: called from the loop thread
    sent: int = 0  # characters already handed to on_chunk


def _resolve(fut: Future, value=None, error: BaseException | None = None) -> None:
    """Complete a future unless its caller already cancelled it."""
    if fut.done():
        return
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)
    except InvalidStateError:  # cancelled between the check and here
        pass


class Batch:
    """The live rows of one model version, stepped together."""

    def __init__(self, art: Artifact, backend, capacity: int):
        self.art, self.version = art, art.version
        self.chars = art.vocab.chars
        self.backend = backend
        self.rows: list[Row] = []
        self.state = backend.new_state(0)
        self.ids = np.zeros(0, np.intp)
        self.context_left = np.zeros(0, np.int64)  # context ids still to feed after this step
        self.sampled = np.zeros(0, np.int64)  # characters sampled so far
        self.noise = NoiseBank(len(self.chars), capacity)
        self._free = list(range(capacity - 1, -1, -1))
        self._params = RowParams([], [], [])
        self._slots = np.zeros(0, np.intp)
        self.steps = 0
        # Set by a row's future when it completes (finished, failed or cancelled from
        # another thread), so ``admit`` scans the rows only when one may have left.
        self._changed = False

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, new: list[Row]) -> list[Row]:
        """Drop finished or cancelled rows, add ``new`` ones (state compacted).

        Returns the rows that left, so the caller can count them.
        """
        if not self._changed and not new:
            return []
        self._changed = False  # before the scan: a row completing during it sets it again
        done = [r.future.done() for r in self.rows]
        keep = [i for i, d in enumerate(done) if not d]
        gone = [r for r, d in zip(self.rows, done, strict=True) if d]
        for r in gone:
            self.noise.close(r.slot)
            self._free.append(r.slot)
        if not gone and not new:
            return gone
        now = time.monotonic()
        for r in new:
            r.slot, r.started = self._free.pop(), now
            self.noise.open(r.slot, r.seed)
            r.future.add_done_callback(self._mark_changed)  # runs at once if already done
        idx = np.asarray(keep, np.intp)
        self.rows = [self.rows[i] for i in keep] + new
        self.state = self.backend.resize(self.state, idx, len(new))
        self.ids = np.concatenate([self.ids[idx], [r.context[0] for r in new]]).astype(np.intp)
        self.context_left = np.concatenate(
            [self.context_left[idx], [len(r.context) - 1 for r in new]]).astype(np.int64)
        self.sampled = np.concatenate([self.sampled[idx], np.zeros(len(new), np.int64)])
        self._slots = np.fromiter((r.slot for r in self.rows), np.intp, len(self.rows))
        self._params = RowParams.of([r.params for r in self.rows])
        return gone

    def encode(self, row: Row) -> None:
        """A row's context ids (start text + prime) in this batch's vocabulary, and its
        prime as this model reads it, before it joins."""
        row.context, enc = start_context(self.art.vocab, row.params.stop, row.prime)
        row.prime, row.dropped = "".join(self.chars[i] for i in enc.ids), enc.dropped

    def _mark_changed(self, _future: Future) -> None:
        self._changed = True

    def step(self) -> int:
        """Advance every row one character; returns the characters sampled."""
        logits = self.backend.step(self.ids, self.state)
        self.steps += 1
        sampling: np.ndarray | slice  # the rows that sample now: indices, or all of them
        if self.context_left.any():  # some rows are still reading their context
            sampling = np.flatnonzero(self.context_left == 0)
            for i in np.flatnonzero(self.context_left).tolist():
                row = self.rows[i]
                self.ids[i] = row.context[len(row.context) - self.context_left[i]]
                self.context_left[i] -= 1
            if sampling.size == 0:
                return 0
            params, logits = self._params.take(sampling), logits[sampling]
        else:  # the common case: every row samples; no gathers
            sampling, params = slice(None), self._params
        noise = self.noise.rows(self._slots[sampling], self.sampled[sampling])
        nxt = choose(logits, params, noise)
        self.sampled[sampling] += 1
        self.ids[sampling] = nxt
        rows = self.rows if isinstance(sampling, slice) else [self.rows[i] for i in sampling]
        chars = self.chars
        for row, c in zip(rows, nxt.tolist(), strict=True):
            self._append(row, chars[c])
        return len(rows)

    def _append(self, row: Row, ch: str) -> None:
        out, stop = row.out, STOP_RULES[row.params.stop]
        out.append(ch)
        # The inline test skips the call for almost every character: only the stop's
        # last character can end it.
        if stop and ch == stop[-1] and stop_reached(out, stop):
            sampled = len(out)
            del out[-len(stop):]
            self._finish(row, "stop", sampled)
        elif len(out) >= row.params.max_chars:
            self._finish(row, "max_chars", len(out))
        elif row.on_chunk is not None and len(out) - len(stop) - row.sent >= CHUNK_CHARS:
            # Hold back len(stop) chars: they may turn out to be the stop sequence, so
            # the chunks always add up to a prefix of the final text.
            end = len(out) - len(stop)
            row.on_chunk("".join(out[row.sent:end]))
            row.sent = end

    def _finish(self, row: Row, reason: str, sampled: int) -> None:
        now = time.monotonic()
        sample = Sample(prime=row.prime, text="".join(row.out), stop_reason=reason,
                        seed=row.seed, dropped=row.dropped, version=self.version)
        steps = len(row.context) + sampled - 1  # the last context step also samples
        queued_ms, generate_ms = (row.started - row.submitted) * 1e3, (now - row.started) * 1e3
        _resolve(row.future, Result(sample, queued_ms + generate_ms, queued_ms, generate_ms,
                                    steps))

    def fail(self, error: BaseException) -> list[Row]:
        """A step failed: every row's caller gets ``error``; the batch empties."""
        for row in self.rows:
            _resolve(row.future, error=error)
        return self.admit([])
