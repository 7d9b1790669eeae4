"""The batching inference engine: one worker thread per loaded style, continuous batching.

Every request for a style joins that style's batch at the next step (its stop sequence
and prime are fed inside the batch), samples with its own temperature / top-k / top-p /
seed, and leaves when its stop rule or length limit fires; its slot is reused at once.
A seeded request writes the same text alone or among 64 others (and the same text as
``Sampler.generate``: both follow ``genmodels/sampler.py``).

* Bounds: at most ``max_batch`` rows step together and ``max_queue`` wait per style;
  past that ``submit`` raises ``Busy`` at once. Each style has its own bounds and its
  own thread, so one style's flood makes only that style busy (fairness across styles;
  BLAS releases the GIL, so workers share the cores; how many BLAS threads a step uses
  is ``genmodels/blas_threads.py``'s call).
* Cancellation: a cancelled future frees its row before the next step.
* Failure: a step that raises fails its batch's callers with ``GenerationError``, any
  other exception in the worker the requests of that round; the worker survives, counts
  it (``Stats.errors``: /healthz, /metrics) and logs it once while it repeats.
* Hot reload: every ``poll_s`` the worker asks which version is active (the ACTIVE
  marker on one machine; the database row, fetched from the object store into the
  local cache, when one is configured: ``serving/model_follow.py``); a new artifact is
  loaded in a background thread and new requests go to it, while rows in flight finish
  on the version they started on (a ``Batch`` per version). A broken version, marker or
  download keeps the loaded version (``serving/engine_versions.py``).
* Health: each worker beats (``heartbeat``) at least every ``HEARTBEAT_S``;
  ``Engine.health`` says which styles are loaded with a live, recently beating worker.

    engine = Engine(); engine.start()
    fut = engine.submit("austen", "It is", SamplingParams(seed=1))  # concurrent Future
    print(fut.result().sample.text); engine.stop()
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

from genmodels import registry
from genmodels.blas_threads import BlasThreads, policy as blas_policy
from genmodels.sampler import SamplingParams
from serving.batch import Batch, NumpyBackend, Row, _resolve
from serving.client import Busy, GenerationError, ModelUnavailable, Result
from serving.engine_stats import OnceLog, Stats
from serving.engine_versions import Versions

log = logging.getLogger(__name__)


def make_backend(art, name: str = "auto"):
    """``numpy``, ``tensorflow``, or ``auto`` (TensorFlow only if a GPU is visible)."""
    if name == "numpy":
        return NumpyBackend(art)
    from serving import tf_backend  # imports nothing heavy unless asked or a GPU is seen
    if name == "tensorflow" or tf_backend.gpu_visible():
        return tf_backend.TFBackend(art)
    return NumpyBackend(art)


HEARTBEAT_S = 1.0  # an idle worker wakes this often, so a stale heartbeat means stuck
STALE_S = 30.0  # no heartbeat for this long: the worker is not ready (/healthz)
# After a loop error: every error consumes the requests it touched, so none can spin
# without progress, but a bug that fails every request costs at most 100 rounds a second.
ERROR_PAUSE_S = 0.01


class StyleWorker(Versions):
    """One style's model(s), its waiting queue and the thread that steps its batches."""

    def __init__(self, style: str, *, max_batch: int = 256, max_queue: int = 256,
                 poll_s: float = 2.0, backend: str = "auto", path: Path | None = None,
                 shipped: Path | None = None, blas: BlasThreads | None = None,
                 said: OnceLog | None = None):
        self.style, self.max_batch, self.max_queue = style, max_batch, max_queue
        self.poll_s, self.backend_name = poll_s, backend
        self._blas = blas  # the engine's shared BLAS thread policy (None: leave as is)
        self._pinned, self._shipped = path, shipped
        self._said = said or OnceLog(log)
        self._cond = threading.Condition()
        self._queue: deque[Row] = deque()
        self._pending: list[Row] = []  # rows taken from the queue, not yet in a batch
        self._thread: threading.Thread | None = None
        self._running = False
        self.heartbeat = time.monotonic()
        self.stats = Stats()
        # Oldest version first; new rows join the last.
        self._batches: list[Batch] = [self._load_first()]

    def _load(self, path: Path) -> Batch:
        art = registry.load(path)  # shared with the neuron pictures: held once
        return Batch(art, make_backend(art, self.backend_name), self.max_batch)

    # -- requests -----------------------------------------------------------------------
    def submit(self, prime: str, params: SamplingParams, on_chunk=None) -> Future:
        """Queue a request; raises ``Busy`` at once when the batch and queue are full,
        ``ValueError`` for params this model cannot take (top-k above its vocabulary).

        ``on_chunk(text)``, if given, is called from the loop thread with each new piece
        of text (the pieces add up to a prefix of the final text)."""
        params.validate(vocab_size=self.vocab_size)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        # The prime is encoded when the row joins: a reload may change the vocabulary.
        row = Row(prime=prime, dropped="", params=params, seed=seed, context=[],
                  future=Future(), submitted=time.monotonic(), on_chunk=on_chunk)
        with self._cond:
            if not self._running:
                raise GenerationError("the inference engine is not running")
            # Rows cancelled or finished but not yet swept out do not count.
            active = sum(not r.future.done() for b in self._batches for r in b.rows)
            if len(self._queue) + active >= self.max_batch + self.max_queue:
                self.stats.requests["busy"] += 1
                raise Busy("busy writing for others; try again in a moment")
            self._queue.append(row)
            self._cond.notify()
        return row.future

    def depth(self) -> tuple[int, int]:
        """(rows stepping, rows waiting)."""
        return sum(len(b) for b in self._batches), len(self._queue)

    def health(self) -> dict:
        """Ready when the thread runs and beat within ``STALE_S``; what /healthz shows."""
        age = time.monotonic() - self.heartbeat
        alive = self._thread is not None and self._thread.is_alive()
        out = {"ready": alive and age < STALE_S, "version": self.version, "alive": alive,
               "heartbeat_age_s": round(age, 3), "errors": self.stats.errors,
               "last_error": self.stats.last_error or None}
        if not alive:
            out["reason"] = "its worker thread is not running"
        elif age >= STALE_S:
            out["reason"] = f"its worker thread has not beaten for {age:.0f} s"
        return out

    # -- the loop -----------------------------------------------------------------------
    def start(self) -> StyleWorker:
        with self._cond:
            if self._running:
                return self
            self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"engine-{self.style}")
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; callers still waiting get ``GenerationError``."""
        with self._cond:
            self._running = False
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        err = GenerationError("the inference engine stopped")
        for batch in self._batches:
            batch.fail(err)
        while self._queue:
            _resolve(self._queue.popleft().future, error=err)

    def _run(self) -> None:
        """Admit, poll, step until stopped; an exception fails that step's requests and
        the loop goes on with the loaded version."""
        self._next_poll = time.monotonic() + self.poll_s
        while True:
            try:
                if not self._once():
                    return
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any bug
                self._survive(exc)

    def _once(self) -> bool:
        """One round: wait for work (beating), admit rows, poll if due, step every
        batch. False once stopped."""
        with self._cond:
            self.heartbeat = now = time.monotonic()
            while self._running and not self._queue and not any(self._batches):
                self._cond.wait(timeout=max(0.01, min(HEARTBEAT_S, self._next_poll - now)))
                self.heartbeat = now = time.monotonic()
                if now >= self._next_poll:
                    break
            if not self._running:
                return False
            self._admit()
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_s
            self._poll()
        if self._blas is not None and any(self._batches):  # only workers that step
            self._blas.tick(self.style)
        for batch in self._batches:
            self._step(batch)
        return True

    def _poll(self) -> None:
        """``reload``; whatever it raises keeps the loaded version and the rows in
        flight (counted, logged once while it repeats)."""
        try:
            self.reload()
        except Exception as exc:  # noqa: BLE001 - a poll must not cost any request
            line = self.stats.error(exc)
            self._said.say(f"{self.style}/poll", logging.ERROR, f"{self.style}: polling for "
                           f"a new version failed, still serving {self.version}: {line}", exc)

    def _survive(self, exc: Exception) -> None:
        """Count and log (once while it repeats) an exception of the loop and fail every
        request it may have touched: the next round starts from empty batches."""
        line = self.stats.error(exc)
        self._said.say(f"{self.style}/loop", logging.ERROR,
                       f"{self.style}: worker error, its requests failed: {line}", exc)
        err = GenerationError(f"generation failed ({type(exc).__name__}); try again")
        with self._cond:
            stepping = {id(r) for b in self._batches for r in b.rows}
            for row in self._pending:
                _resolve(row.future, error=err)
            self.stats.count_gone(r for r in self._pending if id(r) not in stepping)
            self._pending = []
            self._batches = [self._emptied(b, err) for b in self._batches]
        time.sleep(ERROR_PAUSE_S)

    def _emptied(self, batch: Batch, err: GenerationError) -> Batch:
        """``batch`` with every row failed; a fresh batch of the same model if its state
        cannot even be compacted any more."""
        for row in batch.rows:
            _resolve(row.future, error=err)
        try:
            self.stats.count_gone(batch.admit([]))
            return batch
        except Exception:  # noqa: BLE001 - beyond repair: start clean on the same model
            self.stats.count_gone(batch.rows)
            return Batch(batch.art, batch.backend, self.max_batch)

    def _admit(self) -> None:
        """Free finished/cancelled rows, move waiting rows into the newest batch, and
        retire old versions once their last row has left."""
        for batch in self._batches:
            self.stats.count_gone(batch.admit([]))
        active = sum(len(b) for b in self._batches)
        new = self._pending  # failed by _survive if anything below raises
        while self._queue and active + len(new) < self.max_batch:
            row = self._queue.popleft()
            if row.future.cancelled():
                self.stats.requests["cancelled"] += 1
            else:
                new.append(row)
        newest = self._batches[-1]
        if new:
            for row in new:
                newest.encode(row)
            newest.admit(new)
        self._pending = []
        self._batches = [b for b in self._batches[:-1] if len(b)] + [newest]

    def _step(self, batch: Batch) -> None:
        if not len(batch):
            return
        try:
            n = batch.step()
        except Exception as exc:  # every waiter hears about it; the loop goes on
            line = self.stats.error(exc)
            self._said.say(f"{self.style}/step", logging.ERROR, f"{self.style}: step "
                           f"failed on {batch.version}, its requests failed: {line}", exc)
            self.stats.count_gone(batch.fail(
                GenerationError(f"generation failed ({type(exc).__name__}); try again")))
            return
        self.stats.steps += 1
        self.stats.batch_rows += len(batch)
        self.stats.chars += n
        if n:  # sweep finished rows now: their slots and counts are current at once
            self.stats.count_gone(batch.admit([]))


class Engine:
    """Every style's ``StyleWorker``, loaded on first use (or ``preload``); requests
    enter through ``submit`` (``EngineClient`` for async callers)."""

    def __init__(self, *, max_batch: int = 256, max_queue: int = 256, poll_s: float = 2.0,
                 backend: str = "auto", paths: dict[str, Path] | None = None,
                 blas_threads: str | int = "auto", shipped: Path | None = None):
        """``paths``: style -> a fixed artifact folder (else the registry's active one);
        ``shipped``: the folder of shipped models (the config's models/)."""
        self.blas = blas_policy(blas_threads)  # the BLAS thread count is global
        self._new_worker = functools.partial(  # StyleWorker(style, path=...) with these
            StyleWorker, max_batch=max_batch, max_queue=max_queue, poll_s=poll_s,
            backend=backend, blas=self.blas, shipped=shipped, said=OnceLog(log))
        self._paths = paths or {}
        self._workers: dict[str, StyleWorker] = {}
        # style -> (when, why) its model last failed to load: retried after RETRY_S, so a
        # flood of requests for it does not re-read the disk each time.
        self._failed: dict[str, tuple[float, str]] = {}
        self.retry_s = min(float(poll_s), 5.0)
        self._lock = threading.Lock()
        self._running = False

    @classmethod
    def from_settings(cls, cfg: dict, **kw) -> Engine:
        """An engine with config.toml's ``[inference]`` settings
        (``serving.config.inference_settings``); ``kw`` as for ``Engine``."""
        return cls(max_batch=cfg["max_batch"], max_queue=cfg["max_queue"],
                   poll_s=float(cfg["poll_s"]), backend=cfg["backend"],
                   blas_threads=cfg["blas_threads"], **kw)

    def start(self) -> Engine:
        with self._lock:
            self._running = True
            for worker in self._workers.values():
                worker.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._running = False
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()

    def worker(self, style: str) -> StyleWorker:
        """The style's worker, loading its model on first use (``ModelUnavailable``)."""
        with self._lock:
            if style in self._workers:
                return self._workers[style]
            failed = self._failed.get(style)
            if failed and time.monotonic() - failed[0] < self.retry_s:
                raise ModelUnavailable(failed[1])
            try:
                worker = self._new_worker(style, path=self._paths.get(style))
            except ModelUnavailable as exc:
                self._failed[style] = (time.monotonic(), str(exc))
                raise
            self._failed.pop(style, None)
            self._workers[style] = worker.start() if self._running else worker
            return worker

    def preload(self, styles) -> dict[str, str]:
        """Load these styles now; returns style -> the one-line error for any that failed."""
        errors = {}
        for style in styles:
            try:
                self.worker(style)
            except ModelUnavailable as exc:
                errors[style] = str(exc)
        return errors

    def submit(self, style: str, prime: str, params: SamplingParams,
               on_chunk=None) -> Future:
        """The one way a request enters: a concurrent Future of ``client.Result``;
        ``Busy`` at once when full, ``BadParam`` for params this model cannot take. A
        style not loaded yet is loaded first, in the calling thread."""
        params.validate()  # before a model load: bad params cost no disk read
        return self.worker(style).submit(prime, params, on_chunk)

    def loaded(self) -> dict[str, StyleWorker]:
        return dict(self._workers)

    def versions(self) -> dict[str, str]:
        return {name: worker.version for name, worker in self.loaded().items()}

    def health(self, styles) -> dict[str, dict]:
        """style -> ``{"ready": bool, ...}``: ready when loaded with a live worker that
        beat recently (``StyleWorker.health``); a style not loaded says why."""
        workers, out = self.loaded(), {}
        for style in styles:
            if style in workers:
                out[style] = workers[style].health()
            else:
                why = self._failed.get(style, (0.0, "not loaded yet"))[1]
                out[style] = {"ready": False, "version": None, "reason": why}
        return out


class EngineClient:
    """``GenerationClient`` over an in-process ``Engine`` (the default client), and
    ``Engine.submit`` for async callers such as the service. It starts the engine."""

    def __init__(self, engine: Engine):
        self.engine = engine.start()

    async def submit(self, style: str, prime: str, params: SamplingParams,
                     on_chunk=None) -> asyncio.Future:
        """``Engine.submit`` as an asyncio future of ``client.Result``; cancelling it
        frees the request's slot. A first use loads the model in a thread, off the loop."""
        if style not in self.engine.loaded():
            await asyncio.to_thread(self.engine.worker, style)
        return asyncio.wrap_future(self.engine.submit(style, prime, params, on_chunk))

    async def generate(self, style: str, prime: str, params: SamplingParams) -> Result:
        loop = asyncio.get_running_loop()
        start = loop.time()
        done = await (await self.submit(style, prime, params))
        # The latency as the caller saw it: a first use's model load included.
        return dataclasses.replace(done, latency_ms=(loop.time() - start) * 1000.0)

    async def versions(self) -> dict[str, str]:
        return self.engine.versions()

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.stop)
