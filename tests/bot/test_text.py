"""Pure helpers: command parsing, message splitting, rating data, rate limits, settings."""
from __future__ import annotations

import pytest

from bot.ratelimit import RateLimiter
from bot.settings import BotSettings, settings_from_doc
from bot.text import parse_command, parse_rating, rating_buttons, split_message
from genmodels.styles import ConfigError


@pytest.mark.parametrize("text, expected", [
    ("/austen It is a truth", ("austen", "It is a truth", False)),
    ("/Austen@StyleBot  x ", ("austen", "x", False)),
    ("/austen@otherbot x", ("austen", "x", True)),
    ("/proverb\nline one\nline two", ("proverb", "line one\nline two", False)),
    ("hello", ("", "hello", False)),
    ("", ("", "", False)),
    ("/", ("", "/", False)),
    ("/a-b", ("", "/a-b", False)),
    ("/\u05e9\u05dc\u05d5\u05dd", ("", "/\u05e9\u05dc\u05d5\u05dd", False)),
])
def test_parse_command(text, expected):
    assert tuple(parse_command(text, "stylebot")) == expected


def test_rating_data_round_trips_and_rejects_tampering():
    (up_label, up), (down_label, down) = rating_buttons(17)
    assert (up, down) == ("rate:17:+1", "rate:17:-1")
    assert parse_rating(up) == (17, 1) and parse_rating(down) == (17, -1)
    assert len(rating_buttons(2**63 - 1)[0][1].encode()) <= 64  # Telegram's limit
    for bad in ("rate:0:+1", "rate:17:+2", "rate:17:1", "rate:x:+1", "rate:17:+1 ",
                "vote:17:+1", "rate:99999999999999999999:+1", None, ""):
        assert parse_rating(bad) is None, bad


def test_split_message_cuts_at_boundaries_and_loses_nothing():
    para = "First sentence here. Second one follows! " * 30
    text = "\n\n".join([para.strip()] * 5)
    parts = split_message(text, 2000)
    assert all(len(p) <= 2000 for p in parts) and len(parts) > 1
    assert all(p.endswith(("!", ".")) for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == \
        text.replace(" ", "").replace("\n", "")
    hard = split_message("x" * 9000, 4096)  # no boundary at all: cut hard
    assert [len(p) for p in hard] == [4096, 4096, 808]
    assert split_message("  ", 10) == [] and split_message("short", 10) == ["short"]
    lines = split_message("aaaa\nbbbb\ncccc", 10)
    assert lines == ["aaaa\nbbbb", "cccc"]
    with pytest.raises(ValueError):
        split_message("x", 0)


def test_token_bucket_allows_a_burst_then_the_refill_rate():
    now = [0.0]
    limiter = RateLimiter(burst=2, per_minute=6, clock=lambda: now[0])  # one per 10 s
    assert limiter.take("a") == 0 and limiter.take("a") == 0
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0  # per user
    now[0] = 10.0
    assert limiter.take("a") == 0
    assert limiter.take("a") > 0


def test_settings_from_config_tables():
    s = settings_from_doc({"admins": {"telegram": [12, "34"], "discord_roles": ["77"],
                                      "discord_guilds": [88]},
                           "rate_limit": {"burst": 3, "per_minute": 6},
                           "bot": {"chat_temperature_for_all": False, "notify_every_s": 5},
                           "bandit": {"enabled": False, "explore": 0.1}})
    assert s.admin_ids("telegram") == {"12", "34"} and s.admin_roles == {"77"}
    assert s.admin_guilds == {"88"}
    assert (s.rate_burst, s.rate_per_minute, s.chat_temperature_for_all) == (3, 6, False)
    assert (s.learn_temperature, s.notify_every_s) == (False, 5)
    assert settings_from_doc({}) == BotSettings(admins={p: frozenset() for p in
                                                        ("console", "telegram", "discord")})
    for doc, key in [({"admins": {"telegram": "12"}}, "admins.telegram"),
                     ({"admins": {"matrix": []}}, "admins.matrix"),
                     # a role name proves nothing: anyone can name a role in their server
                     ({"admins": {"discord_roles": ["mods"], "discord_guilds": [1]}},
                      "admins.discord_roles: Discord ids are numbers"),
                     ({"admins": {"discord_roles": [77]}}, "admins.discord_roles: list the"),
                     ({"admins": {"discord_guilds": ["x"]}}, "admins.discord_guilds"),
                     ({"rate_limit": {"burst": 0}}, "rate_limit.burst"),
                     ({"bot": {"max_in_flight": 1.5}}, "bot.max_in_flight"),
                     ({"bot": {"notify_every_s": -1}}, "bot.notify_every_s"),
                     ({"bandit": {"enabled": "yes"}}, "bandit.enabled"),
                     ({"telegram": {"mode": "push"}}, "telegram.mode"),
                     ({"telegram": {"mode": "webhook"}}, "telegram.webhook_url")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            settings_from_doc(doc)


def test_the_repository_config_has_valid_bot_tables():
    from bot.settings import load_settings
    from genmodels.styles import DEFAULT_CONFIG

    settings = load_settings(DEFAULT_CONFIG)
    assert "local" in settings.admin_ids("console")
    assert settings.telegram_mode in ("polling", "webhook")
