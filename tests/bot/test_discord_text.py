"""The Discord adapter's pure parts: [discord] settings and plain-text chunking.

    .venv/bin/python -m pytest tests/bot/test_discord_text.py -q
"""
from __future__ import annotations

import pytest

from bot.adapters.discord import LIMIT, DiscordSettings, load_discord_settings, plain_chunks
from genmodels.styles import ConfigError


def _settings(tmp_path, table: str) -> DiscordSettings:
    path = tmp_path / "config.toml"
    path.write_text(table, encoding="utf-8")
    return load_discord_settings(path)


def test_settings_defaults_and_values(tmp_path):
    assert _settings(tmp_path, "") == DiscordSettings()
    got = _settings(tmp_path, '[discord]\nmessage_content = true\nprefixes = ["?"]\n'
                              "sync_guild = 123\n")
    assert got == DiscordSettings(True, ("?",), 123)


@pytest.mark.parametrize("table, key", [
    ("message_content = 1", "discord.message_content"),
    ('prefixes = "!"', "discord.prefixes"),
    ('prefixes = [""]', "discord.prefixes"),
    ("sync_guild = -1", "discord.sync_guild"),
    ("sync_guild = true", "discord.sync_guild"),
    ("token = 'x'", "discord.token"),
])
def test_bad_settings_name_the_key(tmp_path, table, key):
    with pytest.raises(ConfigError) as err:
        _settings(tmp_path, f"[discord]\n{table}\n")
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


def test_plain_chunks_escape_markdown_and_respect_the_limit():
    text = "# Title\n- item\n> quote\n" + "*a* _b_ `c` ~~d~~ ||e|| " * 300
    chunks = plain_chunks(text)
    assert len(chunks) > 1 and all(len(c) <= LIMIT for c in chunks)
    assert chunks[0].startswith("\\# Title\n\\- item\n\\> quote\n\\*a\\*")
    assert not any(c.endswith("\\") for c in chunks)  # no escape cut in two
    joined = " ".join(chunks).replace("\\", "")
    assert joined.split() == text.split()  # nothing lost, only whitespace at cuts


@pytest.mark.parametrize("text", ["", "   ", "plain words", "שלום עולם 👋 мир", "*" * 5000])
def test_plain_chunks_odd_texts(text):
    chunks = plain_chunks(text)
    assert all(0 < len(c) <= LIMIT for c in chunks)
    kept = "".join(chunks).replace("\\", "")
    assert "".join(kept.split()) == "".join(text.split())  # nothing lost but whitespace
