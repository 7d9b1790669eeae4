"""Logging for every entry point: plain text by default, ``LOG_FORMAT=json`` for one JSON
object per line, and the id of the chat request being handled on every record.

``python -m bot``, the inference service and ``python -m training.scheduler`` call
``setup_logging`` instead of ``logging.basicConfig``. With ``LOG_FORMAT=json`` each event
is one line ``{"time": "2026-12-05T12:00:00.123Z", "level": "INFO", "logger": "...",
"message": "...", "request_id": "...", "exception": "Traceback ..."}`` (``request_id``
and ``exception`` only when there is one). The filters the entry points put on the root
handlers afterwards (bot/logsafe.py's redaction, the service's repeat filter) rewrite
the record before it is formatted, so they work the same in both formats.

The bot gives each chat request an id (its log row's uid) and sets ``REQUEST_ID`` while
handling it; the HTTP client sends it to the inference service as ``X-Request-Id``, and
the service sets it again for its own handling (a header that is not a clean id is
replaced by a new one). ``RequestIdFilter`` copies it onto each record.

    setup_logging("INFO", "%(asctime)s %(name)s: %(message)s")   # reads $LOG_FORMAT
    token = REQUEST_ID.set(new_request_id())
"""
from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID = 128
_CLEAN_ID = re.compile(rf"[!-~]{{1,{MAX_REQUEST_ID}}}")  # printable ASCII, no spaces
FORMATS = ("text", "json")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """``value`` if it is 1 to 128 printable ASCII characters without spaces, else None."""
    return value if value is not None and _CLEAN_ID.fullmatch(value) else None


class RequestIdFilter(logging.Filter):
    """Puts the current ``REQUEST_ID`` on each record as ``record.request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the text are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        event: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name,
            "message": record.getMessage()}
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            event["request_id"] = request_id
        if record.exc_info and not record.exc_text:  # a filter may have set (redacted) it
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["exception"] = record.exc_text
        if record.stack_info:
            event["stack"] = record.stack_info
        return json.dumps(event, default=str)  # ASCII: no line separator survives raw


def log_format(env: Mapping[str, str] = os.environ) -> str:
    """``text`` or ``json`` from ``$LOG_FORMAT`` (unset: text); ``ValueError`` otherwise."""
    kind = env.get("LOG_FORMAT", "").strip().lower() or "text"
    if kind not in FORMATS:
        raise ValueError(f"LOG_FORMAT: expected one of {', '.join(FORMATS)}, got {kind!r}")
    return kind


def setup_logging(level: int | str, text_format: str,
                  env: Mapping[str, str] = os.environ) -> str:
    """``logging.basicConfig`` in the format ``$LOG_FORMAT`` names (``text_format`` for
    text), with a ``RequestIdFilter`` on every root handler; the format chosen.

    ``ValueError`` (one line) for a bad ``LOG_FORMAT`` or level. Like basicConfig it
    adds no handler when the root logger already has one (a test's capture)."""
    kind = log_format(env)
    if kind == "json":
        stream = logging.StreamHandler()
        stream.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[stream])
    else:
        logging.basicConfig(level=level, format=text_format)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
    return kind
