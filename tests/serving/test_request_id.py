"""The request id: a chat request's id is on the bot's log records, travels to the
inference service as ``X-Request-Id`` and is on the service's records for that request;
a header that is not a clean id is replaced, never echoed (settings/logs.py).

    .venv/bin/python -m pytest -q tests/serving/test_request_id.py
"""
from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

import pytest
from engine_testing import Server
from service_process import ServiceProcess

from bot.core import Core, Request
from bot.settings import BotSettings
from serving.engine import Engine
from serving.http_client import HttpClient
from settings.logs import MAX_REQUEST_ID, REQUEST_ID_HEADER
from storage.__main__ import upgrade
from storage.database import Database
from tests.json_logs import events, json_root_log

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def json_log():
    """Every record of this process as JSON lines, request ids included."""
    with json_root_log(logging.INFO) as stream:
        yield lambda: events(stream)


@pytest.fixture
def setup(bot):
    bot.save_artifact("tiny", seed=2)
    book = bot.book()
    return book, {name: style.model_dir for name, style in book.styles.items()}


def generated(events: list[dict]) -> list[dict]:
    """The service's line for each answered generation."""
    return [e for e in events if e["logger"] == "serving.service"
            and e["message"].startswith("generate ")]


def test_a_chat_request_id_reaches_the_service_log(setup, tmp_path, json_log):
    book, paths = setup
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade(url)

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            core = Core(book, Database(url, spool=tmp_path / "spool.jsonl"),
                        HttpClient(s.url), BotSettings(rate_burst=100))
            try:
                first = await core.handle(Request("console", "c", "u", text="/tiny It is"))
                second = await core.handle(Request("console", "c", "u", text="/tiny the"))
            finally:
                await core.close()
        return first, second

    first, second = asyncio.run(go())
    assert first.text and second.text and first.request_uid != second.request_uid
    events = json_log()
    bot_ids = [e.get("request_id") for e in events if e["logger"] == "bot.core"]
    assert bot_ids == [first.request_uid, second.request_uid]  # one line per request
    service_ids = [e.get("request_id") for e in generated(events)]
    assert service_ids == [first.request_uid, second.request_uid]


def test_a_bad_request_id_header_is_replaced(setup, json_log):
    book, paths = setup
    body = {"style": "tiny", "prime": "the ", "seed": 1, "max_chars": 10}
    sent = ["req-42:ok", "has space", "x" * (MAX_REQUEST_ID + 1), "caf\u00e9-<b>", None]

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            answers = []
            for value in sent:
                headers = {REQUEST_ID_HEADER: value} if value is not None else None
                status, _, got = await s.post(body, headers=headers)
                assert status == 200
                answers.append(got.get(REQUEST_ID_HEADER))
            async with s.http.post(s.url + "/v1/generate", json={**body, "stream": True},
                                   headers={REQUEST_ID_HEADER: "stream-1"}) as r:
                await r.read()
                answers.append(r.headers.get(REQUEST_ID_HEADER))
            status, _, got = await s.post({"style": "nope"}, headers={REQUEST_ID_HEADER: "e1"})
            assert status == 404
            answers.append(got.get(REQUEST_ID_HEADER))
        return answers

    answers = asyncio.run(go())
    assert answers[0] == "req-42:ok" and answers[-2:] == ["stream-1", "e1"]
    for value, answer in zip(sent[1:], answers[1:len(sent)], strict=True):
        assert answer != value and answer is not None and len(answer) == 32  # a new id
    assert len(set(answers)) == len(answers)
    logged = [e.get("request_id") for e in generated(json_log())]
    assert logged == answers[:-1]  # each generation logged under the id it answered with


def test_the_service_process_logs_json_lines(bot, tmp_path):
    """``LOG_FORMAT=json`` in ``python -m serving``: every line of its output is a JSON
    object, and the generation's line carries the id the caller sent."""
    bot.save_artifact("tiny", seed=2)
    body = json.dumps({"style": "tiny", "prime": "the ", "seed": 1, "max_chars": 10})
    with ServiceProcess(bot.config, tmp_path / "service.log", LOG_FORMAT="json") as svc:
        call = urllib.request.Request(svc.url + "/v1/generate", data=body.encode(), headers={
            "Content-Type": "application/json", REQUEST_ID_HEADER: "proc-7"})
        with urllib.request.urlopen(call, timeout=30) as answer:
            assert answer.headers[REQUEST_ID_HEADER] == "proc-7"
    events = [json.loads(line) for line in svc.log_text().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(events[0])
    assert [e.get("request_id") for e in generated(events)] == ["proc-7"]
