"""settings/logs.py: ``LOG_FORMAT=json`` gives one JSON object a line with the request id,
secrets stay out of it, and the entry points refuse an unknown format.

    .venv/bin/python -m pytest -q tests/test_logs.py
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime

import pytest

from bot.logsafe import MASK, protect_logs, secrets_in
from settings.logs import (
    REQUEST_ID,
    clean_request_id,
    log_format,
    new_request_id,
)
from tests.json_logs import events, json_root_log

ENV = {"TELEGRAM_TOKEN": "123456:AAH-secret_key", "DISCORD_TOKEN": "discord.tok.en",
       "INFERENCE_SECRET": "p@ss/word",
       "DATABASE_URL": "postgresql://bot:db%2Fpa55@db.example.org/bot"}


@pytest.fixture
def json_root():
    """A JSON handler on the root logger, set up as the entry points set theirs up."""
    with json_root_log(logging.DEBUG) as stream:
        yield stream


def test_one_json_object_per_line_with_the_fields(json_root):
    log = logging.getLogger("stylebot.test")
    log.info("plain %s", "line")
    token = REQUEST_ID.set("abc123")
    try:
        log.warning("two\nlines \u2028 and a separator")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        REQUEST_ID.reset(token)
    log.info("after")
    lines = json_root.getvalue().splitlines()
    assert len(lines) == 4  # newlines inside a message are escaped
    first, second, third, last = events(json_root)
    assert first["level"] == "INFO" and first["logger"] == "stylebot.test"
    assert first["message"] == "plain line" and "request_id" not in first
    assert first["time"].endswith("Z")
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert second["message"] == "two\nlines \u2028 and a separator"
    assert second["request_id"] == "abc123" and second["level"] == "WARNING"
    assert third["request_id"] == "abc123" and third["message"] == "failed"
    assert "RuntimeError: boom" in third["exception"]
    assert "request_id" not in last and "exception" not in last


def test_secrets_are_redacted_in_json(json_root):
    protect_logs(ENV)
    logging.getLogger("bot").info("token %s db %s", ENV["TELEGRAM_TOKEN"],
                                  ENV["DATABASE_URL"])
    try:
        raise RuntimeError("secret p@ss/word refused; key AAH-secret_key")
    except RuntimeError:
        logging.getLogger("bot").exception("failed with discord.tok.en")
    text = json_root.getvalue()
    for secret in secrets_in(ENV):
        assert secret not in text
    first, second = events(json_root)
    assert first["message"].count(MASK) == 2
    assert MASK in second["message"] and MASK in second["exception"]


def test_request_ids_are_checked():
    assert len(new_request_id()) == 32 and new_request_id() != new_request_id()
    assert clean_request_id("req-1:abc/2") == "req-1:abc/2"
    assert clean_request_id("x" * 128) == "x" * 128
    for bad in (None, "", "x" * 129, "has space", "new\nline", "caf\u00e9", "tab\t"):
        assert clean_request_id(bad) is None


def test_log_format_reads_the_environment():
    assert log_format({}) == "text" and log_format({"LOG_FORMAT": " JSON "}) == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        log_format({"LOG_FORMAT": "xml"})


def test_setup_logging_in_a_fresh_process(env_for):
    code = ("import logging; from settings.logs import setup_logging, REQUEST_ID\n"
            "setup_logging('INFO', '%(message)s'); REQUEST_ID.set('r1')\n"
            "logging.getLogger('x').info('hello\\nworld'); logging.getLogger('x').debug('no')")
    out = subprocess.run([sys.executable, "-c", code], env=env_for(LOG_FORMAT="json"),
                         capture_output=True, text=True, timeout=60)
    (line,) = out.stderr.splitlines()
    event = json.loads(line)
    assert (event["message"], event["request_id"], event["logger"]) == ("hello\nworld", "r1", "x")
    plain = subprocess.run([sys.executable, "-c", code], env=env_for(),
                           capture_output=True, text=True, timeout=60)
    assert plain.stderr == "hello\nworld\n"  # the default stays plain text


@pytest.mark.parametrize("module", ["bot", "serving", "training.scheduler"])
def test_an_unknown_log_format_stops_the_entry_point(module, env_for):
    args = {"bot": ["console"], "serving": ["--port", "0"]}.get(module, ["--list"])
    out = subprocess.run([sys.executable, "-m", module, *args], env=env_for(LOG_FORMAT="xml"),
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "LOG_FORMAT" in out.stderr, out.stderr
