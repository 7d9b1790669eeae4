"""The bot's own settings from config.toml: admins, rate limits, bounds, adapter options.

Tables read (all optional; defaults below): ``[bot]``, ``[rate_limit]``, ``[admins]``,
``[telegram]``, and ``enabled`` of ``[bandit]`` (the rest of it is storage/bandit.py's).
Secrets (tokens) never live here: they come from the environment. Keys and types are
checked by the ``settings`` package (read once per process); ranges and rules here. A
wrong value raises ``ConfigError`` (``genmodels.styles.ConfigError``) naming the key.

    python -c "from bot.settings import load_settings; print(load_settings())"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import settings
from settings import ConfigError, schema

PLATFORMS = ("console", "telegram", "discord")
DISCORD_KEYS = ("discord_roles", "discord_guilds")  # beside the platforms in [admins]


# The defaults are the schema's (settings/schema.py), written once there.
_BOT, _RATE, _TG, _REDIS = schema.Bot(), schema.RateLimit(), schema.Telegram(), schema.Redis()


@dataclass(frozen=True)
class BotSettings:
    """Everything the core needs besides styles; frozen, built once at start-up."""

    # Per-platform admin user ids (strings); on Discord also role ids, which count only
    # in the servers (guild ids) listed: a role's name proves nothing, anyone can name one.
    admins: dict[str, frozenset[str]] = field(default_factory=dict)
    admin_roles: frozenset[str] = frozenset()
    admin_guilds: frozenset[str] = frozenset()
    chat_temperature_for_all: bool = _BOT.chat_temperature_for_all  # non-admins set theirs?
    rate_burst: float = _RATE.burst  # token bucket: this many requests at once ...
    rate_per_minute: float = _RATE.per_minute  # ... refilled at this rate, per user
    redis_url: str = _REDIS.url  # buckets shared by replicas there (REDIS_URL wins)
    redis_prefix: str = _REDIS.key_prefix  # of every key the bot keeps in Redis
    max_in_flight: int = _BOT.max_in_flight  # generations at once (more wait, up to ...)
    max_waiting: int = _BOT.max_waiting  # ... this many; beyond, "busy" at once
    max_prime_chars: int = _BOT.max_prime_chars  # a longer prime is refused with a reply
    # Temperatures learned from ratings (storage/bandit.py) where nobody fixed one;
    # off: the style's temperature from config.toml.
    learn_temperature: bool = schema.Bandit().enabled
    notify_every_s: float = _BOT.notify_every_s  # finished runs looked for; 0: never
    # The longest a reply waits on the database: a generated text for the log row its
    # rating buttons need, the first request for the temperature settings.
    db_wait_s: float = _BOT.db_wait_s
    # Telegram: "polling" (default) or "webhook" (then webhook_url, listen, port).
    telegram_mode: str = _TG.mode
    telegram_webhook_url: str = _TG.webhook_url
    telegram_listen: str = _TG.listen
    telegram_port: int = _TG.port
    # Prometheus /metrics of the bot process (bot/metrics.py); port 0: not served.
    metrics_port: int = _BOT.metrics_port
    metrics_listen: str = _BOT.metrics_listen

    def admin_ids(self, platform: str) -> frozenset[str]:
        return self.admins.get(platform, frozenset())


def _number(value: float, key: str, where: str, low: float, kind=float):
    # Types are settled by the schema (settings/schema.py); ranges are checked here.
    if value < low:
        raise ConfigError(f"{where}.{key}: must be a number >= {low:g}, got {value!r}")
    return kind(value)


def _ids(value: tuple[str | int, ...]) -> frozenset[str]:
    return frozenset(str(v) for v in value)


def _discord_roles(admins: schema.Admins) -> tuple[frozenset[str], frozenset[str]]:
    """(role ids, guild ids) of ``[admins]``: numeric ids only, roles only with guilds."""
    found = []
    for key in DISCORD_KEYS:
        ids = _ids(getattr(admins, key))
        named = sorted(i for i in ids if not i.isdigit())
        if named:
            raise ConfigError(f"admins.{key}: Discord ids are numbers, got {named[0]!r} "
                              f"(copy the id with Developer Mode on; names are not used)")
        found.append(ids)
    roles, guilds = found
    if roles and not guilds:
        raise ConfigError("admins.discord_roles: list the servers they count in, "
                          "admins.discord_guilds = [GUILD_ID, ...]")
    return roles, guilds


def _port(value: int, key: str, where: str) -> int:
    value = _number(value, key, where, 0, int)
    if value > 65535:
        raise ConfigError(f"{where}.{key}: a TCP port is at most 65535, got {value!r}")
    return value


def _host(value: str, key: str, where: str) -> str:
    if not value.strip():
        raise ConfigError(f"{where}.{key}: expected a host name or address, got {value!r}")
    return value


def settings_from_doc(doc: dict) -> BotSettings:
    """The bot settings of a parsed TOML document (or a dict a test writes)."""
    return settings_from(settings.decode(doc))


def settings_from(config: settings.Config) -> BotSettings:
    """Check the bot's tables of the settings read from config.toml."""
    bot, rate, tg = config.bot, config.rate_limit, config.telegram
    roles, guilds = _discord_roles(config.admins)
    if tg.mode not in ("polling", "webhook"):
        raise ConfigError(f"telegram.mode: 'polling' or 'webhook', got {tg.mode!r}")
    if tg.mode == "webhook" and not tg.webhook_url:
        raise ConfigError("telegram.webhook_url: required in webhook mode")
    return BotSettings(
        admins={p: _ids(getattr(config.admins, p)) for p in PLATFORMS},
        admin_roles=roles, admin_guilds=guilds,
        chat_temperature_for_all=bot.chat_temperature_for_all,
        rate_burst=_number(rate.burst, "burst", "rate_limit", 1),
        rate_per_minute=_number(rate.per_minute, "per_minute", "rate_limit", 0.01),
        redis_url=config.redis.url, redis_prefix=config.redis.key_prefix,
        max_in_flight=_number(bot.max_in_flight, "max_in_flight", "bot", 1, int),
        max_waiting=_number(bot.max_waiting, "max_waiting", "bot", 0, int),
        max_prime_chars=_number(bot.max_prime_chars, "max_prime_chars", "bot", 1, int),
        learn_temperature=config.bandit.enabled,
        notify_every_s=_number(bot.notify_every_s, "notify_every_s", "bot", 0),
        db_wait_s=_number(bot.db_wait_s, "db_wait_s", "bot", 0),
        telegram_mode=tg.mode, telegram_webhook_url=tg.webhook_url,
        telegram_listen=tg.listen,
        telegram_port=_number(tg.port, "port", "telegram", 1, int),
        metrics_port=_port(bot.metrics_port, "metrics_port", "bot"),
        metrics_listen=_host(bot.metrics_listen, "metrics_listen", "bot"))


def load_settings(path: str | Path | None = None) -> BotSettings:
    """The bot settings of ``$BOT_CONFIG`` (or the repository's config.toml)."""
    return settings_from(settings.load(path))
