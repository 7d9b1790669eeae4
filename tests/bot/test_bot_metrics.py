"""The bot's Prometheus metrics: counted where a request finishes, served on
``[bot] metrics_port`` (prometheus_client's format, counters only growing), and nothing
opened without it.

    python -m pytest tests/bot/test_bot_metrics.py -q
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import bot.metrics as bot_metrics
from bot.core import Request
from bot.settings import BotSettings, settings_from_doc
from genmodels.registry import activate
from genmodels.styles import ConfigError
from storage.__main__ import upgrade

pytestmark = pytest.mark.timeout(180)


def values(text: str) -> dict[tuple, float]:
    """(name, sorted label pairs) -> value, parsed by prometheus_client's parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def requests(command: str, outcome: str, platform: str = "telegram") -> tuple:
    return ("stylebot_bot_requests_total",
            (("command", command), ("outcome", outcome), ("platform", platform)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def req(text: str) -> Request:
    return Request("telegram", "c1", "42", text=text, bot_username="stylebot")


def test_requests_are_counted_by_command_and_outcome_and_served(chat):
    port = free_port()

    async def scrape(http) -> tuple[str, dict]:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            return r.headers["Content-Type"], values(await r.text())

    out = {}

    async def scenario():
        core = chat.core(rate_burst=1, rate_per_minute=0.01)  # the 2nd request: limited
        for text in ("/tiny the cat", "/tiny again", "/nosuch", "plain words",
                     "/tiny@otherbot x"):  # the last is not ours: not counted
            await core.handle(req(text))
        runner = await bot_metrics.serve_metrics(core.metrics.registry, "127.0.0.1", port)
        try:
            async with aiohttp.ClientSession() as http:
                out["kind"], out["first"] = await scrape(http)
                out["again"] = (await scrape(http))[1]
                await core.handle(req("/help"))
                out["later"] = (await scrape(http))[1]
        finally:
            await runner.cleanup()

    chat.run(scenario)
    first, later = out["first"], out["later"]
    assert out["kind"].startswith("text/plain; version=0.0.4")
    assert first[requests("tiny", "ok")] == 1
    assert first[requests("tiny", "rate_limited")] == 1
    # A command nobody registered is "unknown" (users cannot mint label values).
    assert first[requests("unknown", "rate_limited")] == 1
    assert first[requests("none", "rate_limited")] == 1  # plain words
    assert not any(dict(labels).get("command") == "nosuch" for _, labels in first)
    def ours(scraped: dict) -> dict:
        return {k: v for k, v in scraped.items() if k[0].startswith("stylebot_")}
    assert ours(out["again"]) == ours(first)  # a scrape resets nothing
    assert later[requests("help", "rate_limited")] == 1
    count = ("stylebot_bot_reply_seconds_count", (("command", "tiny"),))
    assert first[count] == later[count] == 2
    assert ("process_cpu_seconds_total", ()) in later


def test_no_port_no_listener(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a metrics listener was opened")

    monkeypatch.setattr(bot_metrics.web, "TCPSite", refuse)
    assert settings_from_doc({}).metrics_port == 0 == BotSettings().metrics_port
    registry = bot_metrics.BotMetrics(["help"]).registry
    assert asyncio.run(bot_metrics.serve_metrics(registry, "127.0.0.1", 0)) is None


@pytest.mark.parametrize("bot, message", [
    ({"metrics_port": -1}, "bot.metrics_port: must be a number >= 0"),
    ({"metrics_port": 70000}, "bot.metrics_port: a TCP port is at most 65535"),
    ({"metrics_port": "9108"}, "bot.metrics_port: must be a number"),
    ({"metrics_port": True}, "bot.metrics_port: must be a number"),
    ({"metrics_listen": ""}, "bot.metrics_listen: expected a host name or address"),
])
def test_bad_metrics_settings_name_the_key(bot, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_doc({"bot": bot})


def test_python_m_bot_serves_metrics_on_the_configured_port(make_bot, env_for, tmp_path):
    port = free_port()
    setup = make_bot(tmp_path / "bot", edit=lambda toml: toml + (
        f'\n[bot]\nmetrics_port = {port}\n\n[inference]\nbackend = "numpy"\n'))
    registry = tmp_path / "registry"
    setup.save_artifact("tiny").save(registry / "tiny" / "v1")
    activate("tiny", "v1", root=registry)
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade(url)
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "console"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=stderr, text=True, cwd=tmp_path,
            env=env_for(setup.config, DATABASE_URL=url, MODEL_REGISTRY=str(registry)))
    try:
        proc.stdin.write("/tiny the cat\n")
        proc.stdin.flush()
        found = _wait_for_count(proc, port, requests("tiny", "ok", "console"))
    finally:
        proc.stdin.close()  # end of input: the console, then the bot, exits
        proc.wait(timeout=60)
    err = log.read_text()
    assert found == 1, err
    assert proc.returncode == 0, err


def _wait_for_count(proc, port: int, key: tuple, timeout: float = 120) -> float | None:
    """Scrape http://127.0.0.1:port/metrics until ``key`` appears; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                found = values(r.read().decode()).get(key)
            if found is not None:
                return found
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    return None


def test_a_taken_port_is_one_line_and_status_2(make_bot, env_for, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setup = make_bot(tmp_path / "bot", edit=lambda toml: toml + (
            f"\n[bot]\nmetrics_port = {port}\n"))
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "console"], input="", capture_output=True,
            text=True, timeout=120, cwd=tmp_path,
            env=env_for(setup.config, DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"bot: bot.metrics_port: cannot listen on 127.0.0.1:{port}")
