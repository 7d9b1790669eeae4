"""``python -m bot`` with several adapters: each one fails, retries and shards on its own.

The real ``bot.__main__.run`` with the real python-telegram-bot against the fake Bot API
and the real discord.py against the fake gateway (tests/bot/fakediscord/), the real core
(tiny model, migrated SQLite), one event loop, as in production.

    .venv/bin/python -m pytest tests/bot/test_adapters_run.py -q
"""
from __future__ import annotations

import asyncio
import functools
import os
import signal

import pytest
from fake_telegram import TOKEN, FakeTelegram
from fakediscord import GUILD_ID, REFUSED_TOKEN, FakeDiscord, user
from fakediscord.payloads import OTHER_GUILD_ID

from bot import supervise
from bot.__main__ import run
from bot.adapters import discord as discord_adapter, telegram as telegram_adapter
from bot.core import Core
from genmodels.registry import activate
from storage.__main__ import upgrade
from storage.database import Database

BOB = user(1002, "bob")
USER = 42  # a Telegram user


@pytest.fixture
def bot_env(tmp_path, make_bot, monkeypatch):
    """A tiny bot whose config, database and registry ``run`` finds in the environment."""
    setup = make_bot(tmp_path / "bot", edit=lambda toml: toml + "[rate_limit]\nburst = 50\n")
    art = setup.save_artifact("tiny")
    art.save(tmp_path / "registry" / "tiny" / art.version)  # what the engine serves
    activate("tiny", art.version, root=tmp_path / "registry")
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade(url)
    for name, value in {"BOT_CONFIG": str(setup.config), "DATABASE_URL": url,
                        "MODEL_REGISTRY": str(tmp_path / "registry"),
                        "TELEGRAM_TOKEN": TOKEN, "DISCORD_TOKEN": "test-token"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(supervise, "FIRST_RETRY_S", 0.2)  # retries within the test
    monkeypatch.setattr(supervise, "MAX_RETRY_S", 0.5)
    return setup


@pytest.fixture
def fakes(monkeypatch):
    """Start the fake Telegram and Discord inside the test's loop; ``run`` talks to them."""
    async def start():
        tg, dc = await FakeTelegram().start(), await FakeDiscord().start()
        dc.patch(monkeypatch)
        monkeypatch.setattr(telegram_adapter, "serve", functools.partial(
            telegram_adapter.serve, base_url=tg.base_url))
        return tg, dc
    return start


async def sigterm(runner: asyncio.Task) -> int:
    """Stop ``run`` as systemd would; its exit status."""
    assert not runner.done(), runner.result()  # else SIGTERM would end the test run
    os.kill(os.getpid(), signal.SIGTERM)
    return await asyncio.wait_for(runner, 60)


def test_discord_closing_with_4011_stops_neither_telegram_nor_its_own_retries(bot_env,
                                                                              fakes):
    async def main():
        tg, dc = await fakes()
        dc.close_code = 4011  # "sharding required": the gateway closes every IDENTIFY
        runner = asyncio.create_task(run(["telegram", "discord"]))
        try:
            await dc.wait_for(lambda: len(dc.refused) >= 3)  # failed, retried, retried
            tg.message(USER, USER, "/tiny the cat")
            (reply,) = await tg.wait_for("sendMessage", lambda p: p["chat_id"] == USER)
            assert reply["text"].startswith("the cat")  # Telegram kept serving
            dc.close_code = None  # Discord is fine again: the adapter reconnects alone
            await dc.wait_ready()
            token = await dc.slash("tiny", {"text": "the dog"}, author=BOB)
            (answer,) = await dc.wait_for(lambda: dc.messages_for(token))
            assert answer["content"].startswith("the dog")
            assert await sigterm(runner) == 0
        finally:
            runner.cancel()
            await tg.stop()
            await dc.close()
    asyncio.run(main())


def test_a_refused_token_stops_only_that_adapter(bot_env, fakes, monkeypatch, capsys):
    async def main():
        tg, dc = await fakes()
        monkeypatch.setenv("DISCORD_TOKEN", REFUSED_TOKEN)
        runner = asyncio.create_task(run(["telegram", "discord"]))
        try:
            await dc.wait_for(lambda: any(c.path == "/users/@me" for c in dc.calls))
            tg.message(USER, USER, "/help")
            await tg.wait_for("sendMessage", lambda p: p["chat_id"] == USER)
            assert await sigterm(runner) == 1  # one platform refused us
            logins = [c for c in dc.calls if c.path == "/users/@me"]
            assert len(logins) == 1  # a refused token is not retried
            # Alone, a refused token ends the program: nothing could run (status 2).
            assert await asyncio.wait_for(run(["discord"]), 60) == 2
        finally:
            runner.cancel()
            await tg.stop()
            await dc.close()
    asyncio.run(main())
    assert "bot: discord: LoginFailure" in capsys.readouterr().err


def test_a_bot_in_more_than_2500_servers_connects_with_the_shards_discord_asks_for(
        bot_env, monkeypatch):
    async def main():
        dc = await FakeDiscord().start()
        dc.patch(monkeypatch)
        dc.shards = dc.required_shards = 2  # one connection is refused with 4011
        core = Core.from_config(db=Database(os.environ["DATABASE_URL"], spool=None))
        stop = asyncio.Event()
        task = asyncio.create_task(discord_adapter.serve(core, "test-token", stop))
        try:
            await dc.wait_ready(2)  # two shards identified
            assert sorted(dc._ws) == [0, 1] and dc.refused == []
            for guild in (GUILD_ID, OTHER_GUILD_ID):  # on shard 1 and shard 0
                token = await dc.slash("tiny", {"text": "the"}, author=BOB, guild_id=guild)
                # awaited at once, but bound anyway: a closure over a loop variable
                (answer,) = await dc.wait_for(lambda token=token: dc.messages_for(token))
                assert answer["content"].startswith("the")
            stop.set()
            await asyncio.wait_for(task, 30)
        finally:
            task.cancel()
            await core.close()
            await dc.close()
    asyncio.run(main())
