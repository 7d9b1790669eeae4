"""Secrets never reach a log: a filter on the root handlers blanks every configured one.

The Telegram token is part of every Bot API URL, and httpx logs each request URL at
INFO; a driver error may quote a database URL with its password. ``protect_logs``
puts a ``Redactor`` on every root handler (so records from every logger pass it),
rewriting the message, its arguments and any traceback text, and quiets httpx and
httpcore to WARNING. ``python -m bot`` calls it right after configuring logging.

    logging.basicConfig(level="DEBUG")
    protect_logs(os.environ)          # TELEGRAM_TOKEN, DISCORD_TOKEN, ... -> "[redacted]"
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from urllib.parse import quote

SECRET_VARS = ("TELEGRAM_TOKEN", "DISCORD_TOKEN", "TELEGRAM_WEBHOOK_SECRET",
               "INFERENCE_SECRET")
MASK = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter values would blank ordinary words and numbers
CHATTY = ("httpx", "httpcore")  # request URLs at INFO, connection details at DEBUG


def secrets_in(env: Mapping[str, str]) -> list[str]:
    """The secret values configured in ``env``, longest first, URL-quoted forms too."""
    found = {env.get(name, "") for name in SECRET_VARS}
    found |= {_password(env.get(name, "")) for name in ("DATABASE_URL", "REDIS_URL")}
    found |= {quote(value, safe="") for value in found}
    found |= {value.partition(":")[2] for value in found if ":" in value}  # a token's key
    return sorted((v for v in found if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


def _password(url: str) -> str:
    if not url:
        return ""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password or ""
    except Exception:  # not a URL SQLAlchemy reads: the engine will say so elsewhere
        return ""


class Redactor(logging.Filter):
    """Replaces each secret in a record's message and traceback with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: logging would print them raw, so mask them too
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def protect_logs(env: Mapping[str, str] = os.environ) -> Redactor:
    """Put a ``Redactor`` for ``env``'s secrets on every root handler; quiet httpx."""
    redactor = Redactor(secrets_in(env))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    for name in CHATTY:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    return redactor
