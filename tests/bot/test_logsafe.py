"""bot/logsafe.py: every configured secret is blanked from log records, however logged.

    .venv/bin/python -m pytest -q tests/bot/test_logsafe.py
"""
from __future__ import annotations

import io
import logging

import pytest

from bot.logsafe import MASK, protect_logs, secrets_in

ENV = {"TELEGRAM_TOKEN": "123456:AAH-secret_key", "DISCORD_TOKEN": "discord.tok.en",
       "TELEGRAM_WEBHOOK_SECRET": "hook-s3cret", "INFERENCE_SECRET": "p@ss/word",
       "DATABASE_URL": "postgresql://bot:db%2Fpa55@db.example.org/bot",
       "LOG_LEVEL": "DEBUG", "EMPTY": ""}


@pytest.fixture
def captured():
    """A root handler writing to a string, protected as ``python -m bot`` does."""
    root, stream = logging.getLogger(), io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    old_level, levels = root.level, {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        protect_logs(ENV)
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_the_secrets_of_the_environment_are_found():
    found = secrets_in(ENV)
    assert {"123456:AAH-secret_key", "AAH-secret_key", "discord.tok.en", "hook-s3cret",
            "p@ss/word", "p%40ss%2Fword", "db/pa55", "db%2Fpa55"} <= set(found)
    assert "DEBUG" not in found and "" not in found
    assert found == sorted(found, key=len, reverse=True)  # a token before its key part


def test_messages_arguments_and_tracebacks_are_redacted(captured):
    log = logging.getLogger("httpx.fake")
    logging.getLogger("some.library").debug(
        "POST https://api.telegram.org/bot%s/getMe", ENV["TELEGRAM_TOKEN"])
    logging.getLogger("bot").info("inference %s, db %s", "p@ss/word",
                                  "postgresql://bot:db%2Fpa55@db.example.org/bot")
    try:
        raise RuntimeError("webhook secret hook-s3cret refused; token AAH-secret_key")
    except RuntimeError:
        logging.getLogger("bot").exception("failed with discord.tok.en")
    log.info("HTTP Request: POST .../bot123456:AAH-secret_key/getUpdates")  # quieted
    logging.getLogger("bot").warning("bad %d format", "x")  # a broken call still masked
    text = captured.getvalue()
    for secret in secrets_in(ENV):
        assert secret not in text
    assert text.count(MASK) >= 7 and "RuntimeError" in text and "HTTP Request" not in text
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING


def test_a_redis_url_password_is_a_secret():
    assert "r3dis-pw" in secrets_in({"REDIS_URL": "redis://default:r3dis-pw@cache:6379/0"})
