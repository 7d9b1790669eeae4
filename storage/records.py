"""What the chat core hands to storage for one request, and the rules for storing text.

Text rules (the same on SQLite and PostgreSQL, so nothing crashes either backend):

* NUL characters become U+FFFD (PostgreSQL refuses NUL in text); so do lone surrogates
  (they cannot be encoded as UTF-8). Emoji and any other Unicode are kept as they are.
* Each field has a length limit; longer text is cut to the limit and the original length
  is kept beside it (``prime_chars``, ``Generation.length``), so a 100 kB prime is
  logged, visibly truncated, and never refused.

Numbers are refused with ``InvalidInput`` (nothing written) when they cannot be stored
faithfully: NaN or infinite floats (SQLite would store NULL), integers out of range.
"""
from __future__ import annotations

import datetime as dt
import enum
import json
import math
import uuid
from dataclasses import asdict, dataclass, field, fields

from storage.errors import InvalidInput
from storage.models import Outcome, StopReason, utcnow

MAX_PRIME_CHARS = 4_000
MAX_TEXT_CHARS = 100_000
MAX_ERROR_CHARS = 4_000
MAX_NAME_CHARS = 128
MAX_ID_CHARS = 64
INT32 = 2**31 - 1
INT64 = 2**63 - 1


def clean_text(text: str | None, limit: int) -> str:
    """``text`` made storable: no NUL, no lone surrogates, at most ``limit`` characters."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InvalidInput(f"expected text, got {type(text).__name__}")
    text = text[:limit].replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a broken client
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def check_float(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_int(name: str, value: int | None, low: int = 0, high: int = INT32) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_choice(name: str, value: str | None, choices: type[enum.StrEnum],
                 optional: bool = False):
    if value is None and optional:
        return None
    allowed = [c.value for c in choices]
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


@dataclass
class RequestRecord:
    """One request as the chat core saw it; ``text`` is None when nothing was generated."""

    platform: str
    user_external_id: str
    chat_external_id: str
    outcome: str = Outcome.OK.value
    user_name: str = ""
    chat_title: str = ""
    command: str = ""
    style: str | None = None  # config.toml style name; None when the command was unknown
    variant: str = ""
    prime: str = ""
    temperature: float | None = None  # the sampling parameters actually used
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    max_chars: int | None = None
    model_version: str | None = None
    latency_ms: int | None = None
    error: str | None = None
    text: str | None = None
    stop_reason: str | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: dt.datetime = field(default_factory=utcnow)

    def checked(self) -> RequestRecord:
        """Validate numbers and enums (``InvalidInput``); return self for chaining."""
        check_choice("outcome", self.outcome, Outcome)
        if self.text is not None:
            check_choice("stop_reason", self.stop_reason, StopReason)
        for name in ("temperature", "top_p"):
            check_float(name, getattr(self, name))
        check_int("top_k", self.top_k)
        check_int("max_chars", self.max_chars)
        check_int("latency_ms", self.latency_ms)
        check_int("seed", self.seed, -INT64 - 1, INT64)
        if not self.platform or not self.user_external_id or not self.chat_external_id:
            raise InvalidInput("platform, user_external_id and chat_external_id are "
                               "required")
        if self.created_at.tzinfo is None:
            raise InvalidInput("created_at must be an aware datetime")
        return self

    def to_json(self) -> str:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> RequestRecord:
        data = json.loads(line)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["created_at"] = dt.datetime.fromisoformat(data["created_at"])
        return cls(**data)
