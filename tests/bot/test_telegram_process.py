"""``python -m bot telegram`` as a real process against the fake Bot API server:
killed with SIGKILL mid-burst and restarted (nothing lost, nothing answered twice), its
DEBUG log free of the token, and a webhook without a secret refused at start.

    .venv/bin/python -m pytest -q tests/bot/test_telegram_process.py
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter

import pytest
from fake_telegram import TOKEN, FakeTelegram
from sqlalchemy import create_engine, func, select

from genmodels.registry import activate
from storage.__main__ import upgrade
from storage.models import Request as RequestRow, TelegramUpdate

EXTRA = """
[inference]
backend = "numpy"
"""
BURST = 30


class World:
    """A tiny bot (config, a model in a registry, a migrated SQLite file) for children."""

    def __init__(self, make_bot, env_for, tmp_path):
        self.tmp = tmp_path
        self.bot = make_bot(tmp_path / "bot", edit=lambda toml: toml + EXTRA)
        registry = tmp_path / "registry"
        self.bot.save_artifact("tiny").save(registry / "tiny" / "v1")
        activate("tiny", "v1", root=registry)
        self.url = f"sqlite:///{tmp_path / 'bot.db'}"
        upgrade(self.url)
        self.env_for, self.registry = env_for, registry
        self.procs: list[asyncio.subprocess.Process] = []

    def env(self, server: FakeTelegram, **extra: str) -> dict[str, str]:
        return self.env_for(self.bot.config, DATABASE_URL=self.url, TELEGRAM_TOKEN=TOKEN,
                            TELEGRAM_API_URL=server.base_url,
                            MODEL_REGISTRY=str(self.registry), **extra)

    async def start(self, env: dict[str, str], log_name: str):
        log = open(self.tmp / log_name, "wb")  # a file: a DEBUG log would fill a pipe
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "telegram", cwd=self.tmp, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    async def kill_all(self) -> None:
        """Kill what a failed test left running."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def scalar(self, query):
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(query).scalar_one()
        finally:
            engine.dispose()


@pytest.fixture
def world(make_bot, env_for, tmp_path) -> World:
    return World(make_bot, env_for, tmp_path)


async def until(predicate, timeout: float = 60.0, must: bool = True) -> bool:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    if must:
        raise AssertionError("condition not met in time")
    return False


async def stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 60)


def test_a_kill_mid_burst_loses_nothing_and_answers_nothing_twice(world):
    chats = [5000 + i for i in range(BURST)]
    done = select(func.count()).select_from(TelegramUpdate).where(
        TelegramUpdate.done_at.is_not(None))

    async def scenario():
        server = await FakeTelegram().start()
        try:
            first = await world.start(world.env(server), "first.log")
            await server.wait_for("setMyCommands", timeout=120)
            for chat in chats:
                server.message(chat, chat, f"/tiny the {chat}")
            await server.wait_for("sendMessage", count=BURST // 3, timeout=120)
            server.hold("sendMessage")  # replies from now on are in flight at the kill
            await until(lambda: server.held and server.confirmed > BURST)
            delivered = server.sent("sendMessage")
            # Killed after the delivered replies' done marks are written: a reply sent
            # just before its mark would be sent again, a gap no bot can close.
            await until(lambda: world.scalar(done) == len(delivered), 10, must=False)
            answered = {p["chat_id"] for p in delivered}
            # Every update is confirmed to Telegram (a later getUpdates offset) and most
            # are unanswered: what a kill used to lose.
            assert len(answered) < BURST
            first.kill()  # SIGKILL
            await first.wait()
            server.hold("sendMessage", on=False)
            second = await world.start(world.env(server), "second.log")
            # Lost updates never come: then the figures below say how many.
            await until(lambda: len(server.sent("sendMessage")) >= BURST, 60, must=False)
            await asyncio.sleep(2.0)  # a duplicate would show up by now
            assert await stop(second) == 0
            return Counter(p["chat_id"] for p in server.sent("sendMessage")), len(answered)
        finally:
            await world.kill_all()
            await server.stop()

    replies, before_kill = asyncio.run(scenario())
    lost = [c for c in chats if replies[c] == 0]
    twice = [c for c in chats if replies[c] > 1]
    print(f"kill -9 after {before_kill}/{BURST} replies: {len(lost)} lost, "
          f"{len(twice)} answered twice")
    assert (lost, twice) == ([], [])
    assert world.scalar(select(func.count()).select_from(TelegramUpdate).where(
        TelegramUpdate.done_at.is_(None))) == 0
    assert world.scalar(select(func.count()).select_from(RequestRow)) >= BURST


def test_the_token_never_reaches_a_debug_log(world):
    secrets = {"INFERENCE_SECRET": "inference-s3cret", "DISCORD_TOKEN": "discord-t0ken"}

    async def scenario():
        server = await FakeTelegram().start()
        try:
            env = world.env(server, LOG_LEVEL="DEBUG", **secrets)
            proc = await world.start(env, "debug.log")
            await server.wait_for("setMyCommands", timeout=120)
            # Pasted into a chat, the token travels in getUpdates, which PTB logs at DEBUG.
            server.message(77, 77, f"/tiny {TOKEN} inference-s3cret")
            await server.wait_for("sendMessage", timeout=120)
            assert await stop(proc) == 0
        finally:
            await world.kill_all()
            await server.stop()

    asyncio.run(scenario())
    log = (world.tmp / "debug.log").read_text(encoding="utf-8", errors="replace")
    assert " DEBUG telegram" in log and "getUpdates" in log  # the log is a DEBUG log
    assert "[redacted]" in log
    for secret in (TOKEN, TOKEN.partition(":")[2], *secrets.values()):
        assert secret not in log
    assert "HTTP Request:" not in log  # httpx's request lines are at INFO: quieted


def test_a_webhook_open_to_the_network_without_a_secret_does_not_start(world):
    config = world.bot.config
    config.write_text(config.read_text(encoding="utf-8") + """
[telegram]
mode = "webhook"
webhook_url = "https://bot.example.org/telegram"
listen = "0.0.0.0"
""", encoding="utf-8")
    env = world.env_for(config, DATABASE_URL=world.url, TELEGRAM_TOKEN=TOKEN,
                        MODEL_REGISTRY=str(world.registry), TELEGRAM_WEBHOOK_SECRET="",
                        TELEGRAM_API_URL="http://127.0.0.1:9/bot")  # never reached
    proc = subprocess.run([sys.executable, "-m", "bot", "telegram"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=world.tmp)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("bot: telegram.listen = '0.0.0.0': a webhook open to the "
                               "network needs TELEGRAM_WEBHOOK_SECRET"), lines[0]
