"""Sampling temperatures learned from thumbs up/down: Thompson sampling over a grid.

Each style has a few candidate temperatures (``[bandit] temperatures`` in config.toml,
default 0.3 ... 1.1). Every rating of a generation whose request used a grid temperature
is evidence for that arm: arm t has a Beta(1 + up, 1 + down) posterior over its
approval rate. Why Thompson sampling: it needs no tuning constant, explores an arm
exactly as much as it may still be the best one, and handles the uneven, delayed
feedback of a chat (most texts are never rated) gracefully. A small uniform share
(``explore``) keeps every arm rated even after one dominates, so the bandit notices
when a new model version prefers another temperature.

    from storage.bandit import choose_temperature, update_defaults, evidence
    value, source = choose_temperature(session, "austen", rng)   # per request
    update_defaults(session, ["austen"], rng)                    # nightly (scheduler)
    print("\n".join(evidence(session, "austen", rng).lines()))   # /stats

An admin-set temperature (storage/settings.py, chat > style > global) always wins.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

import settings
from settings import ConfigError, schema
from storage.engine import config_path
from storage.errors import StorageConfigError
from storage.models import (
    Generation,
    Rating,
    Request,
    Setting,
    SettingChange,
    TemperatureScope,
    utcnow,
)
from storage.settings import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    _key as setting_key,
    effective_temperature,
)

DEFAULT_GRID = schema.Bandit().temperatures  # the defaults live in settings/schema.py
CHOSEN = "bandit_temperature"  # settings.name of the nightly choice (never an override)
DECIMALS = 3  # request temperatures are matched to grid arms after rounding


@dataclass(frozen=True)
class BanditConfig:
    temperatures: tuple[float, ...] = DEFAULT_GRID
    explore: float = 0.05  # share of requests that try a uniformly random arm
    window_days: float = 60.0  # ratings older than this are forgotten (models change)
    # Per-request counts are cached this long per process: the GROUP BY over a style's
    # rated requests costs ~20 ms at 10k ratings on SQLite, the draw itself microseconds.
    cache_seconds: float = 60.0

    def __post_init__(self):
        if not all(_arm_ok(t) for t in self.temperatures):
            raise StorageConfigError(f"{GRID_RULE}, got {self.temperatures}")


# Every arm is a temperature the sampler takes (genmodels.sampler's bounds; not 0, whose
# greedy texts never vary): one it refuses would fail every request that draws it.
GRID_RULE = (f"bandit.temperatures: at least two distinct numbers from {MIN_TEMPERATURE:g} "
             f"to {MAX_TEMPERATURE:g}")


def _arm_ok(t) -> bool:
    return MIN_TEMPERATURE <= t <= MAX_TEMPERATURE


def load_config(path: Path | None = None) -> BanditConfig:
    """``[bandit]`` of config.toml (keys and types checked by the ``settings`` package,
    the values here); errors name the key (``StorageConfigError``)."""
    try:
        table = settings.load(path or config_path(), missing_ok=True).bandit
    except ConfigError as exc:
        raise StorageConfigError(str(exc)) from None
    grid = table.temperatures
    if len(grid) < 2 or len(set(grid)) != len(grid) or not all(_arm_ok(t) for t in grid):
        raise StorageConfigError(GRID_RULE)
    if not 0 <= table.explore <= 1:
        raise StorageConfigError("bandit.explore: a share between 0 and 1")
    if table.window_days <= 0:
        raise StorageConfigError("bandit.window_days: must be positive")
    if table.cache_seconds < 0:
        raise StorageConfigError("bandit.cache_seconds: must be 0 (off) or more")
    return BanditConfig(tuple(round(t, DECIMALS) for t in sorted(grid)),
                        table.explore, table.window_days, table.cache_seconds)


class Arm(NamedTuple):
    temperature: float
    up: int
    down: int

    @property
    def mean(self) -> float:
        """Posterior mean approval, Beta(1 + up, 1 + down)."""
        return (1 + self.up) / (2 + self.up + self.down)


def arms(session: Session, style: str, config: BanditConfig,
         now: dt.datetime | None = None) -> list[Arm]:
    """Up and down votes per grid temperature for ``style`` within the window."""
    since = (now or utcnow()) - dt.timedelta(days=config.window_days)
    rows = session.execute(
        select(Request.temperature,
               func.sum(case((Rating.value > 0, 1), else_=0)),
               func.sum(case((Rating.value < 0, 1), else_=0)))
        .join(Generation, Generation.id == Rating.generation_id)
        .join(Request, Request.id == Generation.request_id)
        .where(Request.style == style, Request.temperature.is_not(None),
               Rating.updated_at >= since)
        .group_by(Request.temperature)).all()
    votes = {t: [0, 0] for t in config.temperatures}
    for temperature, up, down in rows:
        key = round(float(temperature), DECIMALS)
        if key in votes:  # off-grid temperatures (an admin's 0.75) are not an arm
            votes[key][0] += int(up)
            votes[key][1] += int(down)
    return [Arm(t, up, down) for t, (up, down) in votes.items()]


_cache: dict[tuple, tuple[float, list[Arm]]] = {}
_cache_lock = threading.Lock()


def cached_arms(session: Session, style: str, config: BanditConfig) -> list[Arm]:
    """``arms``, reused for ``config.cache_seconds`` per database and style."""
    if config.cache_seconds <= 0:
        return arms(session, style, config)
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine  # a Connection's engine
    key = (str(engine.url), style, config)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < config.cache_seconds:
        return hit[1]
    fresh = arms(session, style, config)
    with _cache_lock:
        _cache[key] = (now, fresh)
    return fresh


def thompson(arms_: list[Arm], rng: np.random.Generator) -> Arm:
    """The arm whose posterior draw is highest."""
    draws = [rng.beta(1 + a.up, 1 + a.down) for a in arms_]
    return arms_[int(np.argmax(draws))]


def prob_best(arms_: list[Arm], rng: np.random.Generator, draws: int = 4000) -> list[float]:
    """Monte Carlo probability that each arm has the highest approval."""
    samples = np.stack([rng.beta(1 + a.up, 1 + a.down, size=draws) for a in arms_])
    wins = np.bincount(samples.argmax(axis=0), minlength=len(arms_))
    return (wins / draws).tolist()


def choose_temperature(session: Session, style: str, rng: np.random.Generator, *,
                       chat_id: int | None = None, config: BanditConfig | None = None
                       ) -> tuple[float, str]:
    """The temperature for one request that fixes none, and why (for logs and /stats).

    An admin-set temperature (chat, style or global) wins; otherwise a Thompson draw,
    or with probability ``explore`` a uniformly random arm.
    """
    fixed = effective_temperature(session, style, chat_id, default=float("nan"))
    if fixed.scope != "default":
        return fixed.value, f"set by an admin ({fixed.scope})"
    config = config or load_config()
    return draw(cached_arms(session, style, config), rng, config)


def draw(current: list[Arm], rng: np.random.Generator, config: BanditConfig
         ) -> tuple[float, str]:
    """One request's temperature from the arms' evidence, and why; no database work.

    With probability ``explore`` a uniformly random arm, else a Thompson draw.
    """
    if rng.random() < config.explore:
        arm = current[int(rng.integers(len(current)))]
        return arm.temperature, f"bandit: exploring {arm.temperature:g}"
    arm = thompson(current, rng)
    return arm.temperature, (f"bandit: Thompson draw, {arm.temperature:g} has "
                             f"+{arm.up}/-{arm.down}")


def chosen_default(session: Session, style: str) -> float | None:
    """The temperature the last nightly update chose for ``style`` (None before one)."""
    return session.execute(select(Setting.value).where(
        Setting.key == _key(style))).scalar_one_or_none()


def update_defaults(session: Session, styles: list[str], rng: np.random.Generator,
                    config: BanditConfig | None = None) -> dict[str, float]:
    """Nightly: store each style's most probably best arm; {style: temperature}.

    A change is written to ``setting_changes`` too (name ``bandit_temperature``, no
    user), so /stats history shows when and how the learned default moved.
    """
    config = config or load_config()
    chosen = {}
    for style in styles:
        current = arms(session, style, config)
        if not any(a.up + a.down for a in current):
            continue  # no evidence yet: nothing to choose
        best = current[int(np.argmax(prob_best(current, rng)))].temperature
        chosen[style] = best
        row = session.execute(select(Setting).where(Setting.key == _key(style))
                              .with_for_update()).scalar_one_or_none()
        old = None if row is None else row.value
        if old == best:
            continue
        now = utcnow()
        if row is None:
            session.add(Setting(key=_key(style), name=CHOSEN,
                                scope=TemperatureScope.STYLE.value, style=style,
                                value=best, set_by_user_id=None, set_at=now))
        else:
            row.value, row.set_at = best, now
        session.add(SettingChange(name=CHOSEN, scope=TemperatureScope.STYLE.value,
                                  style=style, old_value=old, new_value=best,
                                  changed_by_user_id=None, changed_at=now))
    session.flush()
    return chosen


@dataclass(frozen=True)
class Evidence:
    """What /stats shows about one style's temperature."""

    style: str
    chosen: float | None  # the nightly choice
    override: tuple[float, str] | None  # (value, scope) when an admin fixed one
    arms: list[Arm]
    p_best: list[float]

    def lines(self) -> list[str]:
        if self.override is not None:
            head = f"{self.style}: temperature {self.override[0]:g}, set by an admin " \
                   f"({self.override[1]}); the bandit resumes when it is reset"
        elif self.chosen is None:
            head = f"{self.style}: temperature learned from ratings: no choice yet"
        else:
            head = f"{self.style}: temperature {self.chosen:g}, learned from ratings"
        rows = [f"  {a.temperature:>4g}: +{a.up}/-{a.down}  approval ~{a.mean:.0%}  "
                f"P(best) {p:.0%}" for a, p in zip(self.arms, self.p_best, strict=True)]
        return [head, *rows]


def evidence(session: Session, style: str, rng: np.random.Generator,
             config: BanditConfig | None = None) -> Evidence:
    config = config or load_config()
    current = arms(session, style, config)
    fixed = effective_temperature(session, style, None, default=float("nan"))
    override = None if fixed.scope == "default" else (fixed.value, fixed.scope)
    return Evidence(style, chosen_default(session, style), override, current,
                    prob_best(current, rng))


def _key(style: str) -> str:
    # storage/settings.py owns the key format; reuse it rather than spell it again.
    return setting_key(CHOSEN, TemperatureScope.STYLE.value, style, None)
