"""The batching inference engine: one loop (thread) per loaded model, continuous batching.

Every request for a style joins that style's batch at the next step (its stop sequence
and prime are fed inside the batch), samples with its own temperature / top-k / top-p /
seed, and leaves when its stop rule or length limit fires; its slot is reused at once.
A seeded request writes the same text alone or among 64 others (and the same text as
``Sampler.generate``; see ``genmodels/batch_sampling.py``).

* Bounds: at most ``max_batch`` rows step together and ``max_queue`` wait per style;
  past that ``submit`` raises ``Busy`` at once. Each style has its own bounds and its
  own thread, so one style's flood makes only that style busy (fairness across styles;
  BLAS releases the GIL, so loops share the cores; how many BLAS threads a step uses
  is ``genmodels/blas_threads.py``'s call).
* Cancellation: a cancelled future frees its row before the next step.
* Failure: if a step raises, every caller in that batch gets ``GenerationError`` and the
  loop goes on with the next requests.
* Hot reload: every ``poll_s`` the loop stats ``registry.active_path(style)``; a new
  artifact is loaded in a background thread and new requests go to it, while rows in
  flight finish on the version they started on (a ``Batch`` per version).

    engine = Engine(); engine.start()
    fut = engine.submit("austen", "It is", SamplingParams(seed=1))  # concurrent Future
    print(fut.result().generation.text); engine.stop()
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

from genmodels import artifact
from genmodels.artifact import ArtifactError
from genmodels.batch import Batch, NumpyBackend, Row, _resolve
from genmodels.blas_threads import BlasThreads, policy as blas_policy
from genmodels.generation import Busy, GenerationError, ModelUnavailable, Result
from genmodels.registry import active_path
from genmodels.sampler import STOP_RULES, SamplingParams

log = logging.getLogger(__name__)


def make_backend(art, name: str = "auto"):
    """``numpy``, ``tensorflow``, or ``auto`` (TensorFlow only if a GPU is visible)."""
    if name == "numpy":
        return NumpyBackend(art)
    from genmodels import tf_backend  # imports nothing heavy unless asked or a GPU is seen
    if name == "tensorflow" or tf_backend.gpu_visible():
        return tf_backend.TFBackend(art)
    return NumpyBackend(art)


def _fingerprint(path: Path) -> tuple:
    """Cheap identity of an artifact folder: path and model.json's mtime/size."""
    try:
        st = (path / artifact.META_FILE).stat()
        return (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return (str(path), None, None)


LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Stats:
    """Counters one loop keeps for /metrics (plain ints: a torn read costs nothing)."""

    def __init__(self):
        self.requests = {"ok": 0, "busy": 0, "error": 0, "cancelled": 0}
        self.chars = 0
        self.steps = 0
        self.batch_rows = 0  # sum over steps of rows stepped: mean batch = rows / steps
        self.reloads = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # last: +Inf
        self.latency_sum_ms = 0.0

    def count_gone(self, rows) -> None:
        """Classify rows that left a batch: cancelled, failed, or done."""
        for row in rows:
            fut = row.future
            if fut.cancelled():
                self.requests["cancelled"] += 1
            elif fut.exception() is not None:
                self.requests["error"] += 1
            else:
                self.requests["ok"] += 1
                done = fut.result()
                self.observe(done.queued_ms + done.generate_ms)

    def observe(self, ms: float) -> None:
        i = next((k for k, b in enumerate(LATENCY_BUCKETS_MS) if ms <= b),
                 len(LATENCY_BUCKETS_MS))
        self.latency_counts[i] += 1
        self.latency_sum_ms += ms


class ModelLoop:
    """One style's model(s), its waiting queue and its stepping thread."""

    def __init__(self, style: str, *, max_batch: int = 256, max_queue: int = 256,
                 poll_s: float = 2.0, backend: str = "auto", path: Path | None = None,
                 blas: BlasThreads | None = None):
        self.style, self.max_batch, self.max_queue = style, max_batch, max_queue
        self.poll_s, self.backend_name = poll_s, backend
        self._blas = blas  # the engine's shared BLAS thread policy (None: leave as is)
        self._pinned = path  # a fixed artifact folder (tests, benches); else the registry
        self._cond = threading.Condition()
        self._queue: deque[Row] = deque()
        self._batches: list[Batch] = []  # oldest version first; new rows join the last
        self._thread: threading.Thread | None = None
        self._running = False
        self._loading = False
        self.stats = Stats()
        self._load_now()

    # -- model versions ---------------------------------------------------------------
    def _path(self) -> Path:
        return self._pinned or active_path(self.style)

    def _load(self, path: Path) -> Batch:
        art = artifact.load(path)
        return Batch(art, make_backend(art, self.backend_name), self.max_batch)

    def _load_now(self) -> None:
        path = self._path()
        self._fp = _fingerprint(path)
        try:
            self._batches.append(self._load(path))
        except ArtifactError as exc:
            log.warning("%s: %s", self.style, exc)
            raise ModelUnavailable(f"the {self.style} model is unavailable") from exc

    @property
    def version(self) -> str:
        return self._batches[-1].version

    def reload(self, wait: bool = False) -> None:
        """Load the active artifact in the background if it changed; ``wait`` blocks."""
        fp = _fingerprint(self._path())
        if fp == self._fp or self._loading:
            return
        self._loading = True
        t = threading.Thread(target=self._background_load, args=(fp,), daemon=True,
                             name=f"reload-{self.style}")
        t.start()
        if wait:
            t.join()

    def _background_load(self, fp: tuple) -> None:
        try:
            batch = self._load(Path(fp[0]))
        except Exception as exc:  # keep serving the old version; say why once
            log.error("%s: cannot load %s, still serving %s: %s", self.style, fp[0],
                      self.version, exc)
            self._fp = fp
            return
        finally:
            self._loading = False
        with self._cond:
            self._fp = fp
            self._batches.append(batch)
            self.stats.reloads += 1
            self._cond.notify()
        log.info("%s: now serving %s (was %s)", self.style, batch.version,
                 self._batches[-2].version)

    # -- requests -----------------------------------------------------------------------
    def submit(self, prime: str, params: SamplingParams, on_chunk=None) -> Future:
        """Queue a request; raises ``Busy`` at once when the batch and queue are full.

        ``on_chunk(text)``, if given, is called from the loop thread with each new piece
        of text (the pieces add up to a prefix of the final text)."""
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

    # -- the loop -----------------------------------------------------------------------
    def start(self) -> "ModelLoop":
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
        next_poll = time.monotonic() + self.poll_s
        while True:
            with self._cond:
                while self._running and not self._queue and not any(self._batches):
                    self._cond.wait(timeout=max(0.01, next_poll - time.monotonic()))
                    if time.monotonic() >= next_poll:
                        break
                if not self._running:
                    return
                self._admit()
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_s
                self.reload()
            if self._blas is not None and any(self._batches):  # only loops that step
                self._blas.tick(self.style)
            for batch in self._batches:
                self._step(batch)

    def _admit(self) -> None:
        """Free finished/cancelled rows, move waiting rows into the newest batch, and
        retire old versions once their last row has left."""
        for batch in self._batches:
            self.stats.count_gone(batch.admit([]))
        active = sum(len(b) for b in self._batches)
        new: list[Row] = []
        while self._queue and active + len(new) < self.max_batch:
            row = self._queue.popleft()
            if row.future.cancelled():
                self.stats.requests["cancelled"] += 1
            else:
                new.append(row)
        newest = self._batches[-1]
        if new:
            for row in new:
                _encode(row, newest)
            newest.admit(new)
        self._batches = [b for b in self._batches[:-1] if len(b)] + [newest]

    def _step(self, batch: Batch) -> None:
        if not len(batch):
            return
        try:
            n = batch.step()
        except Exception as exc:  # every waiter hears about it; the loop goes on
            log.exception("%s: step failed on %s", self.style, batch.version)
            self.stats.count_gone(batch.fail(
                GenerationError(f"generation failed ({type(exc).__name__}); try again")))
            return
        self.stats.steps += 1
        self.stats.batch_rows += len(batch)
        self.stats.chars += n
        if n:  # sweep finished rows now: their slots and counts are current at once
            self.stats.count_gone(batch.admit([]))


def _encode(row: Row, batch: Batch) -> None:
    """Context ids (stop sequence + prime) in the batch's vocabulary, as Sampler does."""
    vocab = batch.art.vocab
    enc = vocab.encode(row.prime)
    row.context = vocab.encode(STOP_RULES[row.params.stop] or "\n").ids + enc.ids or [0]
    row.prime, row.dropped = "".join(batch.chars[i] for i in enc.ids), enc.dropped


class Engine:
    """Every style's ``ModelLoop``, loaded on first use (or ``preload``)."""

    def __init__(self, *, max_batch: int = 256, max_queue: int = 256, poll_s: float = 2.0,
                 backend: str = "auto", paths: dict[str, Path] | None = None,
                 blas_threads: str | int = "auto"):
        self.blas = blas_policy(blas_threads)  # the BLAS thread count is global
        self.options = dict(max_batch=max_batch, max_queue=max_queue, poll_s=poll_s,
                            backend=backend, blas=self.blas)
        self._paths = paths or {}  # style -> fixed artifact folder (else the registry)
        self._loops: dict[str, ModelLoop] = {}
        self._lock = threading.Lock()
        self._running = False

    @classmethod
    def from_settings(cls, cfg: dict) -> "Engine":
        """An engine with config.toml's ``[inference]`` settings
        (``generation.inference_settings``)."""
        return cls(max_batch=cfg["max_batch"], max_queue=cfg["max_queue"],
                   poll_s=float(cfg["poll_s"]), backend=cfg["backend"],
                   blas_threads=cfg["blas_threads"])

    def start(self) -> "Engine":
        with self._lock:
            self._running = True
            for loop in self._loops.values():
                loop.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._running = False
            loops = list(self._loops.values())
        for loop in loops:
            loop.stop()

    def loop(self, style: str) -> ModelLoop:
        """The style's loop, loading its model on first use (``ModelUnavailable``)."""
        with self._lock:
            if style not in self._loops:
                loop = ModelLoop(style, path=self._paths.get(style), **self.options)
                self._loops[style] = loop.start() if self._running else loop
            return self._loops[style]

    def preload(self, styles) -> dict[str, str]:
        """Load these styles now; returns style -> the one-line error for any that failed."""
        errors = {}
        for style in styles:
            try:
                self.loop(style)
            except ModelUnavailable as exc:
                errors[style] = str(exc)
        return errors

    def submit(self, style: str, prime: str, params: SamplingParams,
               on_chunk=None) -> Future:
        """A concurrent Future of ``batch.Completion``; ``Busy`` at once when full."""
        params.validate()
        return self.loop(style).submit(prime, params, on_chunk)

    def loaded(self) -> dict[str, ModelLoop]:
        return dict(self._loops)

    async def aloop(self, style: str) -> ModelLoop:
        """``loop(style)`` for async callers: a loaded style costs no thread hop."""
        loop = self._loops.get(style)
        return loop if loop is not None else await asyncio.to_thread(self.loop, style)

    def versions(self) -> dict[str, str]:
        return {name: loop.version for name, loop in self.loaded().items()}


class EngineClient:
    """``GenerationClient`` over an in-process ``Engine`` (the default client)."""

    def __init__(self, engine: Engine | None = None):
        self.engine = (engine or Engine()).start()

    async def generate(self, style: str, prime: str, params: SamplingParams) -> Result:
        loop = asyncio.get_running_loop()
        start = loop.time()
        model = await self.engine.aloop(style)  # first use loads it (in a thread)
        params.validate()
        # Cancelling the awaiting task cancels the future, which frees the row's slot.
        done = await asyncio.wrap_future(model.submit(prime, params))
        return Result(done.generation, (loop.time() - start) * 1000.0)

    async def versions(self) -> dict[str, str]:
        return self.engine.versions()

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.stop)
