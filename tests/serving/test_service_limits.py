"""The service's server limits and readiness, on 127.0.0.1: idle, trickling and slow
clients are cut off, connections past the limit are refused (one log line for many),
and /healthz is 200 only when every configured style is loaded with a live loop."""
import asyncio
import json
import logging
import socket
import time

import pytest
from engine_testing import Server, http_request, install_gate, status_of
from service_process import ServiceProcess

import serving.engine as engine_mod
from genmodels.sampler import SamplingParams
from serving.engine import Engine
from serving.logfilters import RepeatFilter
from serving.service_http import Limits

pytestmark = pytest.mark.timeout(120)
FAST = Limits(keepalive_s=0.5, read_timeout_s=0.5, max_connections=8)
OK = {"style": "tiny", "seed": 1, "max_chars": 5}


async def timed(coro):
    start = time.monotonic()
    out = await coro
    return out, time.monotonic() - start


def test_idle_trickling_and_slow_clients_are_cut_off(every_style):
    book, paths = every_style
    keep_alive = http_request(json.dumps(OK).encode()).replace(b"Connection: close\r\n", b"")

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book,
                          limits=FAST) as s:
            return (await timed(s.raw(b"", wait=10)),  # connects, sends nothing
                    await timed(s.raw(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\n", wait=10)),
                    await timed(s.raw(http_request(b"{" + b" " * 99)[:-90], wait=10)),
                    await timed(s.raw(keep_alive, wait=10)))  # answered, then idle

    idle, headers, body, kept = asyncio.run(go())
    assert idle[0] == b"" and idle[1] < 5
    assert headers[0] == b"" and headers[1] < 5
    status, answer = status_of(body[0])
    assert status == 408 and "body: not received within 0.5 s" in answer["error"]
    assert body[1] < 5
    assert status_of(kept[0])[0] == 200 and kept[1] < 5


def test_connections_past_the_limit_are_refused_with_429(every_style):
    book, paths = every_style
    limits = Limits(keepalive_s=30, read_timeout_s=5, max_connections=3)

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book,
                          limits=limits) as s:
            held = [await asyncio.open_connection("127.0.0.1", s.port) for _ in range(3)]
            await asyncio.sleep(0.1)
            refused = status_of(await s.raw(http_request(json.dumps(OK).encode()), wait=5))
            for _, writer in held:
                writer.close()
            async with asyncio.timeout(10):
                while s.runner.server.connections:  # the held ones close server side too
                    await asyncio.sleep(0.01)
            after = await s.post(OK)
        return refused, after

    (status, answer), after = asyncio.run(go())
    assert status == 429 and "too many connections" in answer["error"]
    assert after[0] == 200


def test_the_real_service_logs_a_repeated_line_once(make_bot, tmp_path):
    """python -m serving with max_connections = 2: 30 refusals, one line."""
    bot = make_bot(tmp_path / "bot", edit=lambda toml: toml + (
        "\n[inference]\nmax_connections = 2\nkeepalive_s = 30.0\n"))
    for i, style in enumerate(bot.book().names()):
        bot.save_artifact(style, seed=i)
    with ServiceProcess(bot.config, tmp_path / "service.log") as svc:
        held = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(2)]
        time.sleep(0.2)
        answers = []
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", svc.port)) as extra:
                extra.settimeout(10)
                answers.append(extra.recv(200).split(b" ", 2)[1])
        for sock in held:
            sock.close()
    log = svc.log_text()
    assert answers == [b"429"] * 30
    assert log.count("refusing connections") == 1, log
    assert "Traceback" not in log and svc.returncode == 0


def test_repeat_filter_lets_a_line_through_once_per_interval_and_counts_the_rest():
    now = [0.0]
    flt = RepeatFilter(interval_s=60, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        return logging.LogRecord("x", logging.WARNING, "f", 1, "disk %s full", ("A",), None)
    assert [flt.filter(record()) for _ in range(100)].count(True) == 1
    assert flt.filter(logging.LogRecord("x", logging.WARNING, "f", 1, "other", (), None))
    now[0] = 61.0
    again = record()
    assert flt.filter(again) and again.getMessage() == (
        "disk A full (99 more like this in the last 60 s)")
    assert flt.suppressed == 99


def test_healthz_is_200_only_when_every_style_is_ready(every_style, bot, monkeypatch):
    book, paths = every_style

    async def go():
        engine = Engine(paths=paths, backend="numpy").start()
        async with Server(engine, book) as s:
            before = await s.get("/healthz")  # nothing loaded yet
            engine.preload(book.names())
            ready = await s.get("/healthz")
            engine.worker("fable_fox").stop()  # its loop no longer runs
            stopped = await s.get("/healthz")
        return before, ready, stopped

    before, ready, stopped = asyncio.run(go())
    assert before[0] == 503 and json.loads(before[1])["not_ready"] == book.names()
    body = json.loads(ready[1])
    assert ready[0] == 200 and body["ok"] and body["not_ready"] == []
    assert all(h["ready"] and h["version"] for h in body["styles"].values())
    body = json.loads(stopped[1])
    assert stopped[0] == 503 and body["not_ready"] == ["fable_fox"]
    assert body["styles"]["fable_fox"]["reason"] == "its worker thread is not running"


def test_healthz_names_a_style_whose_loop_is_stuck_or_whose_model_is_missing(bot, monkeypatch):
    bot.save_artifact("tiny")
    bot.save_artifact("fable_fox")
    book = bot.book()
    paths = {name: style.model_dir for name, style in book.styles.items()}
    gate = install_gate(monkeypatch)  # no step released: tiny's loop stays in a step
    monkeypatch.setattr(engine_mod, "STALE_S", 0.3)

    async def go():
        engine = Engine(paths=paths, backend="numpy").start()
        async with Server(engine, book) as s:
            engine.preload(book.names())
            engine.submit("tiny", "", SamplingParams(seed=1))
            await asyncio.sleep(1.0)
            health = await s.get("/healthz")
            gate.open = True
            gate.release(1)  # let it go, so that stopping it is quick
            return health

    status, text = asyncio.run(go())
    body = json.loads(text)
    assert status == 503 and body["not_ready"] == ["tiny", "fable_owl", "empty"]
    assert "has not beaten" in body["styles"]["tiny"]["reason"]
    assert "unavailable" in body["styles"]["fable_owl"]["reason"]
    assert body["styles"]["fable_fox"]["ready"]
