"""Logging filters for the inference service (installed by ``python -m serving``).

* ``RepeatFilter``: the same line (logger, level, text) passes at most once per
  ``interval_s``; the repeats in between are counted, and the next line let through
  says how many there were. A flood of identical warnings costs one line a minute.
* ``ClientErrorFilter``: aiohttp logs a malformed request (bad request line, broken
  chunking, an undecodable body) at ERROR with a traceback. That is the client's
  fault, not a bug: it becomes one WARNING line, without the traceback and without
  the client's bytes.

    handler.addFilter(RepeatFilter(60.0))
    python -m pytest tests/serving/test_service_limits.py -q
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError


def _text(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format must not break the caller's log call
        return str(record.msg)


class RepeatFilter(logging.Filter):
    """Lets each distinct line through once per ``interval_s`` and counts the rest."""

    def __init__(self, interval_s: float = 60.0, max_lines: int = 4096, clock=time.monotonic):
        super().__init__()
        self.interval_s, self.max_lines, self._clock = interval_s, max_lines, clock
        self._lines: OrderedDict[tuple, list] = OrderedDict()  # key -> [shown at, held]
        self._lock = threading.Lock()
        self.suppressed = 0  # lines held back since start

    def filter(self, record: logging.LogRecord) -> bool:
        text = _text(record)
        key, now = (record.name, record.levelno, text), self._clock()
        with self._lock:
            seen = self._lines.get(key)
            if seen is not None and now - seen[0] < self.interval_s:
                seen[1] += 1
                self.suppressed += 1
                return False
            held = seen[1] if seen is not None else 0
            self._lines[key] = [now, 0]
            self._lines.move_to_end(key)
            while len(self._lines) > self.max_lines:  # bounded: hostile text varies
                self._lines.popitem(last=False)
        if held:
            record.msg = f"{text} ({held} more like this in the last {self.interval_s:g} s)"
            record.args = ()
        return True


class ClientErrorFilter(logging.Filter):
    """Turns aiohttp's traceback for a client's malformed request into one warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (HttpProcessingError, RequestPayloadError)):
            # The kind of problem, without the client's bytes aiohttp quotes after ":",
            # so a flood of garbage is one repeated line (RepeatFilter), not thousands.
            text = getattr(exc, "message", None) or str(exc)
            why = " ".join(str(text).split(":")[0].split())[:100]
            record.msg, record.args = f"{_text(record)}: {type(exc).__name__}: {why}", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
