"""The bot's own settings from config.toml: admins, rate limits, bounds, adapter options.

Tables read (all optional; defaults below): ``[bot]``, ``[rate_limit]``, ``[admins]``,
``[telegram]``, and ``enabled`` of ``[bandit]`` (the rest of it is storage/bandit.py's).
Secrets (tokens) never live here: they come from the environment.
A wrong value raises ``genmodels.styles.ConfigError`` naming the key.

    python -c "from bot.settings import load_settings; print(load_settings())"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genmodels.styles import ConfigError, read_config

PLATFORMS = ("console", "telegram", "discord")
DISCORD_KEYS = ("discord_roles", "discord_guilds")  # beside the platforms in [admins]


@dataclass(frozen=True)
class BotSettings:
    """Everything the core needs besides styles; frozen, built once at start-up."""

    # Per-platform admin user ids (strings); on Discord also role ids, which count only
    # in the servers (guild ids) listed: a role's name proves nothing, anyone can name one.
    admins: dict[str, frozenset[str]] = field(default_factory=dict)
    admin_roles: frozenset[str] = frozenset()
    admin_guilds: frozenset[str] = frozenset()
    chat_temperature_for_all: bool = True  # may non-admins set their chat's temperature?
    rate_burst: float = 5.0  # token bucket: this many requests at once ...
    rate_per_minute: float = 12.0  # ... refilled at this rate, per user
    max_in_flight: int = 64  # generations at once (more wait, up to max_waiting)
    max_waiting: int = 200  # beyond this the bot answers "busy" at once
    max_prime_chars: int = 1000  # a longer prime is refused with a clear reply
    # Temperatures learned from ratings (storage/bandit.py) where nobody fixed one;
    # off: the style's temperature from config.toml.
    learn_temperature: bool = True
    notify_every_s: float = 30.0  # how often finished training runs are looked for; 0: never
    # The longest a reply waits on the database: a generated text for the log row its
    # rating buttons need, the first request for the temperature settings.
    db_wait_s: float = 2.0
    # Telegram: "polling" (default) or "webhook" (then webhook_url, listen, port).
    telegram_mode: str = "polling"
    telegram_webhook_url: str = ""
    telegram_listen: str = "127.0.0.1"
    telegram_port: int = 8443
    # Prometheus /metrics of the bot process (bot/metrics.py); port 0: not served.
    metrics_port: int = 0
    metrics_listen: str = "127.0.0.1"

    def admin_ids(self, platform: str) -> frozenset[str]:
        return self.admins.get(platform, frozenset())


def _number(table: dict, key: str, where: str, default, low: float, kind=float):
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ConfigError(f"{where}.{key}: must be a number >= {low:g}, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{where}.{key}: must be an integer, got {value!r}")
    return kind(value)


def _ids(value, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(f"{where}: expected a list of user ids, got {value!r}")
    return frozenset(str(v) for v in value)


def _discord_roles(admins: dict) -> tuple[frozenset[str], frozenset[str]]:
    """(role ids, guild ids) of ``[admins]``: numeric ids only, roles only with guilds."""
    unknown = sorted(set(admins) - set(PLATFORMS) - set(DISCORD_KEYS))
    if unknown:
        raise ConfigError(f"admins.{unknown[0]}: unknown key (known: "
                          f"{', '.join(PLATFORMS + DISCORD_KEYS)})")
    found = []
    for key in DISCORD_KEYS:
        ids = _ids(admins.get(key, []), f"admins.{key}")
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


def _port(table: dict, key: str, where: str, default: int) -> int:
    value = _number(table, key, where, default, 0, int)
    if value > 65535:
        raise ConfigError(f"{where}.{key}: a TCP port is at most 65535, got {value!r}")
    return value


def _host(table: dict, key: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: expected a host name or address, got {value!r}")
    return value


def _table(doc: dict, name: str) -> dict:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a table, got {value!r}")
    return value


def settings_from_doc(doc: dict) -> BotSettings:
    """Validate the parsed TOML document's bot tables."""
    bot, rate, admins, tg, bandit = (_table(doc, n) for n in (
        "bot", "rate_limit", "admins", "telegram", "bandit"))
    admin_map = {p: _ids(admins.get(p, []), f"admins.{p}") for p in PLATFORMS}
    roles, guilds = _discord_roles(admins)
    everyone = bot.get("chat_temperature_for_all", True)
    if not isinstance(everyone, bool):
        raise ConfigError(f"bot.chat_temperature_for_all: expected true or false, "
                          f"got {everyone!r}")
    learn = bandit.get("enabled", True)
    if not isinstance(learn, bool):
        raise ConfigError(f"bandit.enabled: expected true or false, got {learn!r}")
    mode = tg.get("mode", "polling")
    if mode not in ("polling", "webhook"):
        raise ConfigError(f"telegram.mode: 'polling' or 'webhook', got {mode!r}")
    if mode == "webhook" and not isinstance(tg.get("webhook_url"), str):
        raise ConfigError("telegram.webhook_url: required in webhook mode")
    return BotSettings(
        admins=admin_map, admin_roles=roles, admin_guilds=guilds,
        chat_temperature_for_all=everyone,
        rate_burst=_number(rate, "burst", "rate_limit", 5, 1),
        rate_per_minute=_number(rate, "per_minute", "rate_limit", 12, 0.01),
        max_in_flight=_number(bot, "max_in_flight", "bot", 64, 1, int),
        max_waiting=_number(bot, "max_waiting", "bot", 200, 0, int),
        max_prime_chars=_number(bot, "max_prime_chars", "bot", 1000, 1, int),
        learn_temperature=learn,
        notify_every_s=_number(bot, "notify_every_s", "bot", 30, 0),
        db_wait_s=_number(bot, "db_wait_s", "bot", 2.0, 0),
        telegram_mode=mode, telegram_webhook_url=tg.get("webhook_url", ""),
        telegram_listen=str(tg.get("listen", "127.0.0.1")),
        telegram_port=_number(tg, "port", "telegram", 8443, 1, int),
        metrics_port=_port(bot, "metrics_port", "bot", 0),
        metrics_listen=_host(bot, "metrics_listen", "bot", "127.0.0.1"))


def load_settings(path: str | Path | None = None) -> BotSettings:
    """Read ``$BOT_CONFIG`` (or the repository's config.toml) and validate the bot tables."""
    return settings_from_doc(read_config(path)[1])
