"""Discord shards split across processes: ``[discord] shard_count`` and ``shard_ids``.

Two adapters (each what one ``python -m bot discord`` process runs) share 2 shards
against the fake gateway: each identifies with its own ``[shard id, 2]``, answers the
servers of its shard, and only the one with shard 0 syncs the slash commands. A shard
id out of range stops ``python -m bot discord`` with one line and status 2.

    .venv/bin/python -m pytest -q tests/bot/test_discord_shards.py
"""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from fakediscord import GUILD_ID, FakeDiscord, user
from fakediscord.payloads import OTHER_GUILD_ID

from bot.adapters.discord import DiscordAdapter, DiscordSettings, load_discord_settings
from bot.core import Core
from genmodels.registry import activate
from settings import ConfigError
from storage.__main__ import upgrade
from storage.database import Database

BOB = user(1002, "bob")


def _settings(tmp_path, table: str) -> DiscordSettings:
    path = tmp_path / "config.toml"
    path.write_text(f"[discord]\n{table}\n", encoding="utf-8")
    return load_discord_settings(path)


def test_shard_settings(tmp_path):
    got = _settings(tmp_path, "shard_count = 4\nshard_ids = [2, 3]")
    assert (got.shard_count, got.shard_ids, got.syncs_commands) == (4, (2, 3), False)
    assert _settings(tmp_path, "shard_count = 4").syncs_commands
    assert DiscordSettings().syncs_commands


@pytest.mark.parametrize("table, message", [
    ("shard_count = 2\nshard_ids = [2]", "discord.shard_ids: 2 is out of range for "
                                         "shard_count = 2 (shard ids go from 0 to 1)"),
    ("shard_count = 2\nshard_ids = [-1]", "discord.shard_ids: -1 is out of range"),
    ("shard_ids = [0]", "discord.shard_ids: needs discord.shard_count"),
    ("shard_count = 3\nshard_ids = [1, 1]", "discord.shard_ids: [1, 1] names a shard twice"),
    ("shard_count = -1", "discord.shard_count: expected 0"),
    ('shard_ids = ["a"]', "discord.shard_ids"),
])
def test_bad_shards_are_one_config_error_line(tmp_path, table, message):
    with pytest.raises(ConfigError) as err:
        _settings(tmp_path, table)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.fixture
def bot_config(tmp_path, make_bot, monkeypatch):
    """A tiny bot with 2 Discord shards; ``core(shard_ids)`` as one process builds it."""
    setup = make_bot(tmp_path / "bot")
    art = setup.save_artifact("tiny")
    art.save(tmp_path / "registry" / "tiny" / art.version)
    activate("tiny", art.version, root=tmp_path / "registry")
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade(url)
    monkeypatch.setenv("MODEL_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("DATABASE_URL", url)
    return setup, url


def test_two_processes_split_two_shards(bot_config, monkeypatch):
    setup, url = bot_config

    async def main():
        fake = await FakeDiscord().start()
        fake.patch(monkeypatch)
        core = Core.from_config(setup.config, db=Database(url, spool=None))
        adapters = [DiscordAdapter(core, DiscordSettings(shard_count=2, shard_ids=(i,)))
                    for i in (1, 0)]  # shard 1's process first: it must not sync
        try:
            await adapters[0].start("test-token")
            await fake.wait_for(lambda: fake.shards_identified == [[1, 2]])
            assert fake.commands == []  # not synced by the process without shard 0
            await adapters[1].start("test-token")
            await fake.wait_ready(2)
            assert sorted(fake.shards_identified) == [[0, 2], [1, 2]]
            assert sum(c.method == "PUT" for c in fake.calls) == 1  # one sync
            for guild in (GUILD_ID, OTHER_GUILD_ID):  # on shard 1 and shard 0
                token = await fake.slash("tiny", {"text": "the"}, author=BOB,
                                         guild_id=guild)
                (answer,) = await fake.wait_for(lambda token=token: fake.messages_for(token))
                assert answer["content"].startswith("the")
        finally:
            for adapter in adapters:
                await adapter.close()
            await core.close()
            await fake.close()
    asyncio.run(main())


def test_a_shard_out_of_range_stops_the_process_with_one_line(bot_config, env_for):
    setup, url = bot_config
    config = setup.config
    config.write_text(config.read_text(encoding="utf-8")
                      + "\n[discord]\nshard_count = 2\nshard_ids = [1, 2]\n", encoding="utf-8")
    env = env_for(config, DATABASE_URL=url, DISCORD_TOKEN="test-token")
    proc = subprocess.run([sys.executable, "-m", "bot", "discord"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=config.parent)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["bot: discord: discord.shard_ids: 2 is out of range for "
                     "shard_count = 2 (shard ids go from 0 to 1)"], proc.stderr
