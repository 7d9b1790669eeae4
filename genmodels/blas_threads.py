"""How many OpenBLAS threads the engine's batched steps use: every core the rest of the
machine leaves idle.

A step for 64 streams of a 2x256 model took 0.93 ms on two BLAS threads and 1.45 ms on
one (2-core AMD EPYC Zen 4, ``bench/gpu_check.py``, docs/BENCHMARKS.md). But while
another process keeps the second core busy (a nightly retrain, say), a two-thread step
waits for that core and is slower than a one-thread step (2.07 ms against 1.46 ms in the
same run; 2.20 against 1.75 on a 2-core Xeon).
So, with ``blas_threads = "auto"``, the engine looks at /proc/stat and its own CPU time
about once a second: the cores other processes used in that second are taken (time the
hypervisor gave to other guests counts too), the rest are shared among this process's
busy style workers (each steps in its own thread), at least one each. A number
instead of "auto" fixes the count. Where /proc/stat does not exist, "auto"
keeps the count the process started with (``genmodels/__init__`` makes that one).

The single-stream ``Sampler`` ticks the same process-wide policy for each character: on
an idle machine a stream gets both cores after its first second (a step at batch 1 took
0.058 ms instead of 0.067 in that run, 0.12 instead of 0.18 on the Xeon); a short CLI
run stays on one thread.

    p = policy("auto"); p.tick("austen")   # before each step
"""
from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)

PERIOD_S = 1.0
BUSY_CORE = 0.3  # other processes' use of a core above which it counts as taken
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_busy_s() -> float | None:
    """Seconds of CPU time the whole machine has spent busy since boot (/proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _TICK


def _own_s() -> float:
    t = os.times()
    return t.user + t.system


def check_setting(setting) -> None:
    """ValueError unless ``setting`` is "auto" or a whole number >= 1."""
    if setting != "auto" and not (type(setting) is int and setting >= 1):
        raise ValueError(f'blas_threads: expected "auto" or a number >= 1, got {setting!r}')


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_shared: BlasThreads | None = None
_shared_lock = threading.Lock()


def policy(setting: str | int = "auto") -> BlasThreads:
    """The process-wide "auto" policy (one per process: the thread count is global), or
    a fixed one for a number."""
    global _shared
    check_setting(setting)
    if setting != "auto":
        return BlasThreads(setting)
    with _shared_lock:
        if _shared is None:
            _shared = BlasThreads("auto")
        return _shared


class BlasThreads:
    """Sets OpenBLAS's (process-wide) thread count for the engine's style workers and the
    sampler; ``tick`` never raises."""

    def __init__(self, setting: str | int = "auto"):
        check_setting(setting)
        self.setting = setting
        self.cores = cores()
        self._lock = threading.Lock()
        self._libs: list | None = None  # threadpoolctl's BLAS controllers, on first use
        self._current: int | None = None
        self._seen: dict[str, float] = {}  # loop name -> last tick
        self._next = 0.0
        self.others = 0.0  # cores other processes used in the last look
        self._last = (time.monotonic(), _cpu_busy_s(), _own_s())

    @property
    def current(self) -> int | None:
        """The thread count last set (None before the first tick)."""
        return self._current

    def tick(self, loop: str) -> None:
        """Called by a model loop before each step; cheap except about once a second."""
        now = time.monotonic()
        self._seen[loop] = now
        if now < self._next:
            return
        with self._lock:
            if now < self._next:
                return
            self._next = now + PERIOD_S
            try:
                self._set(self.setting if isinstance(self.setting, int) else self._auto(now))
            except Exception as exc:  # tuning must never stop a model loop: give up on it
                log.warning("BLAS thread policy off, keeping %s threads: %s",
                            self._current, exc)
                self._next = float("inf")

    def _auto(self, now: float) -> int | None:
        then, busy_then, own_then = self._last
        busy, own = _cpu_busy_s(), _own_s()
        self._last = (now, busy, own)
        if busy is None or busy_then is None or not 0.2 * PERIOD_S <= now - then <= 3 * PERIOD_S:
            # No reading yet (or none on this system), or the last one is from before an
            # idle spell, which says nothing about now: keep, and look again in a period.
            return self._current
        others = max(0.0, (busy - busy_then) - (own - own_then)) / (now - then)
        free = self.cores - int(others + (1 - BUSY_CORE))  # a core used > 30% is taken
        # A copy (atomic under the GIL): another loop may add its name meanwhile.
        loops = sum(now - t < 2 * PERIOD_S for t in tuple(self._seen.values())) or 1
        self.others = others
        log.debug("other processes used %.2f cores; %d loops busy", others, loops)
        return max(1, free // loops)

    def _set(self, n: int | None) -> None:
        if n is None or n == self._current:
            return
        if self._libs is None:
            from threadpoolctl import ThreadpoolController  # only engines need it
            self._libs = ThreadpoolController().select(user_api="blas").lib_controllers
        for lib in self._libs:
            lib.set_num_threads(n)
        log.info("BLAS threads: %s -> %d (other processes used %.2f cores)",
                 self._current, n, self.others)
        self._current = n
