"""The ``[schedule]`` table of config.toml: when and how each style is retrained.

Every key has a default, so a config.toml without the table schedules every style
nightly at 03:00 (the scheduler's local time). ``[schedule.styles.NAME]`` overrides
any per-style key for one style. Keys and types are checked by the ``settings`` package
(settings/schema.py); ranges and cron expressions here. Mistakes raise ``ConfigError``
naming the key.

    python -c "from training.schedule_config import load_schedule; print(load_schedule())"
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger

import settings
from genmodels.styles import StyleBook, book_from
from settings import ConfigError, given, schema
from training.registry_ops import LEASE_SECONDS


@dataclass(frozen=True)
class StylePlan:
    """How one style is retrained (per-style keys; each may be overridden)."""

    cron: str = "0 3 * * *"  # minute hour day month weekday
    enabled: bool = True
    minutes: float = 5.0  # training budget of one retrain
    margin: float = 0.005  # promote only when val loss falls by at least this (nats/char)
    keep: int = 5  # versions kept on disk; the active one is never removed
    scratch: bool = False  # train from random weights instead of fine-tuning the active
    learning_rate_scale: float = 0.3  # fine-tunes use this fraction of the style's LR


@dataclass(frozen=True)
class ScheduleConfig:
    """Scheduler-wide settings and one ``StylePlan`` per style."""

    jitter_seconds: int = 900  # styles start up to this much after their cron time
    misfire_grace_seconds: int = 3600  # a run missed while down still runs this late
    coalesce: bool = True  # several missed runs of a job run once
    poll_seconds: int = 30  # how often queued /retrain requests are picked up
    timeout_slack_seconds: int = 600  # a run is killed this long after its budget
    nightly_bandit: str = "30 4 * * *"  # when the temperature bandit is updated
    # A running run's lease is renewed this often; a run unrenewed for
    # registry_ops.LEASE_SECONDS (60 s) is failed by whoever looks.
    heartbeat_seconds: float = 5.0
    styles: dict[str, StylePlan] = field(default_factory=dict)
    default: StylePlan = field(default_factory=StylePlan)

    def for_style(self, name: str) -> StylePlan:
        return self.styles.get(name, self.default)


_PLAN_KEYS = {f.name for f in fields(StylePlan)}
_TOP_KEYS = {f.name for f in fields(ScheduleConfig)} - {"styles", "default"}


_POSITIVE = {"minutes", "keep", "poll_seconds", "learning_rate_scale", "heartbeat_seconds"}


def _check(key: str, value, where: str):
    """``value`` of ``key`` (its type settled by the schema) in range; names the key."""
    if isinstance(value, str):
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ConfigError(f"{where}.{key}: bad cron expression {value!r} ({exc})") from None
    elif not isinstance(value, bool) and (value < 0 or (key in _POSITIVE and value <= 0)):
        raise ConfigError(f"{where}.{key}: must be positive, got {value!r}")
    return value


def _plan(table: schema.Plan, base: StylePlan, where: str) -> StylePlan:
    plan_keys = {k: v for k, v in given(table).items() if k in _PLAN_KEYS}
    return replace(base, **{k: _check(k, v, where) for k, v in plan_keys.items()})


def parse_schedule(doc: dict, book: StyleBook) -> ScheduleConfig:
    """The ``[schedule]`` table of an already parsed config.toml."""
    return schedule_from(settings.decode(doc).schedule, book)


def schedule_from(table: schema.Schedule, book: StyleBook) -> ScheduleConfig:
    """The ``[schedule]`` table of the settings (keys and types checked there)."""
    default = _plan(table, StylePlan(), "schedule")
    for name in table.styles:
        if name not in book.styles:
            raise ConfigError(f"schedule.styles.{name}: no style {name!r} in [styles]")
    plans = {name: _plan(table.styles.get(name, schema.Plan()), default,
                         f"schedule.styles.{name}") for name in book.styles}
    rest = {k: v for k, v in given(table).items() if k in _TOP_KEYS}
    top = {k: _check(k, v, "schedule") for k, v in rest.items()}
    if top.get("heartbeat_seconds", 0) * 3 > LEASE_SECONDS:  # a late beat is no death
        raise ConfigError(f"schedule.heartbeat_seconds: at most {LEASE_SECONDS / 3:g} "
                          f"(a third of the {LEASE_SECONDS:g} s lease)")
    return ScheduleConfig(styles=plans, default=default, **top)


def load_schedule(path: str | Path | None = None) -> tuple[StyleBook, ScheduleConfig]:
    """The styles and the schedule from config.toml (``$BOT_CONFIG`` or the repository's)."""
    path = settings.config_path(path)
    config = settings.load(path)  # once per process, for the styles and the schedule
    book = book_from(path, config)
    return book, schedule_from(config.schedule, book)
