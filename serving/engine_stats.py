"""What one style's worker counts and reports: request outcomes, steps, latency,
errors (for ``/metrics`` and ``/healthz``), and ``OnceLog``, which keeps a problem that
repeats every step or poll to one log line while it lasts.

    python -m pytest tests/serving/test_engine_resilience.py -q
"""
from __future__ import annotations

import logging
import threading

LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Stats:
    """Counters one loop keeps for /metrics (plain ints: a torn read costs nothing)."""

    def __init__(self):
        self.requests = {"ok": 0, "busy": 0, "error": 0, "cancelled": 0}
        self.chars = 0
        self.steps = 0
        self.batch_rows = 0  # sum over steps of rows stepped: mean batch = rows / steps
        self.reloads = 0
        self.errors = 0  # failed steps and loop errors survived
        self.last_error = ""  # "Type: message" of the latest one
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # last: +Inf
        self.latency_sum_ms = 0.0

    def count_gone(self, rows) -> None:
        """Classify rows that left a batch: cancelled, failed, or done."""
        for row in rows:
            fut = row.future
            if fut.cancelled():
                self.requests["cancelled"] += 1
            elif not fut.done() or fut.exception() is not None:
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

    def error(self, exc: BaseException) -> str:
        """Count a survived exception; its one-line description."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return self.last_error


class OnceLog:
    """Logs a line for a topic only when it differs from the topic's previous line, so
    a problem that comes back every step or poll is one line until it changes."""

    def __init__(self, logger: logging.Logger):
        self.log = logger
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def say(self, topic: str, level: int, line: str, exc: BaseException | None = None) -> bool:
        with self._lock:
            if self._last.get(topic) == line:
                return False
            self._last[topic] = line
        self.log.log(level, "%s", line, exc_info=exc)
        return True

    def clear(self, topic: str) -> None:
        """The topic's problem is over: its next line is logged again."""
        with self._lock:
            self._last.pop(topic, None)
