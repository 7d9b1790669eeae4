"""The temperature bandit on SQLite and PostgreSQL: it learns the best arm from a
synthetic stream of ratings stored through the real log/rate functions, keeps exploring,
and an admin-set temperature always wins."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from storage.bandit import (
    BanditConfig,
    arms,
    choose_temperature,
    chosen_default,
    evidence,
    load_config,
    update_defaults,
)
from storage.errors import StorageConfigError
from storage.log import log_request
from storage.models import SettingChange
from storage.ratings import rate
from storage.settings import clear_temperature, effective_temperature, set_temperature

CONFIG = BanditConfig(temperatures=(0.3, 0.5, 0.7, 0.9, 1.1), explore=0.05, cache_seconds=0)
APPROVAL = {0.3: 0.15, 0.5: 0.35, 0.7: 0.8, 0.9: 0.45, 1.1: 0.2}  # 0.7 is best


def serve_and_rate(session, record, style, n, rng, world):
    """n requests: choose a temperature, log the generation, rate it like the world would."""
    chosen = []
    for _ in range(n):
        value, source = choose_temperature(session, style, rng, config=CONFIG)
        logged = log_request(session, record(style=style, temperature=value))
        vote = 1 if world.random() < APPROVAL[value] else -1
        rate(session, logged.generation_id, logged.user_id, vote)
        chosen.append((value, source))
    return chosen


def test_converges_to_the_best_arm(session, record):
    rng, world = np.random.default_rng(1), np.random.default_rng(2)
    chosen = serve_and_rate(session, record, "austen", 300, rng, world)
    values = [v for v, _ in chosen]
    assert set(values) == set(CONFIG.temperatures)  # every arm was tried
    late = values[-100:]
    assert late.count(0.7) >= 70, {t: late.count(t) for t in CONFIG.temperatures}
    assert all(s.startswith("bandit: ") for _, s in chosen)
    # The evidence is what was stored: every rating counted exactly once, per arm.
    counted = arms(session, "austen", CONFIG)
    assert sum(a.up + a.down for a in counted) == 300
    assert {a.temperature: a.up + a.down for a in counted} == {
        t: values.count(t) for t in CONFIG.temperatures}
    assert update_defaults(session, ["austen", "sotu"], rng, CONFIG) == {"austen": 0.7}
    assert chosen_default(session, "austen") == 0.7 and chosen_default(session, "sotu") is None
    lines = evidence(session, "austen", rng, CONFIG).lines()
    assert lines[0] == "austen: temperature 0.7, learned from ratings"
    assert len(lines) == 1 + len(CONFIG.temperatures)


def test_nightly_choice_is_audited_and_not_an_override(session, record):
    rng = np.random.default_rng(3)
    for value, vote in [(0.5, 1), (0.5, 1), (0.9, -1)]:
        logged = log_request(session, record(style="sotu", temperature=value))
        rate(session, logged.generation_id, logged.user_id, vote)
    assert update_defaults(session, ["sotu"], rng, CONFIG) == {"sotu": 0.5}
    update_defaults(session, ["sotu"], rng, CONFIG)  # unchanged: no second audit row
    audit = session.query(SettingChange).filter_by(name="bandit_temperature").all()
    assert [(a.style, a.old_value, a.new_value) for a in audit] == [("sotu", None, 0.5)]
    # The learned default is not an admin setting: it does not fix the temperature.
    assert effective_temperature(session, "sotu", None, default=0.8).scope == "default"


def test_admin_override_wins_until_reset(session, record):
    rng = np.random.default_rng(4)
    admin = log_request(session, record()).user_id
    set_temperature(session, 0.42, by_user_id=admin, style="austen")
    assert choose_temperature(session, "austen", rng, config=CONFIG) == (
        0.42, "set by an admin (style)")
    ev = evidence(session, "austen", rng, CONFIG)
    assert ev.override == (0.42, "style") and "set by an admin" in ev.lines()[0]
    # Ratings of an off-grid temperature are no arm's evidence.
    logged = log_request(session, record(style="austen", temperature=0.42))
    rate(session, logged.generation_id, logged.user_id, 1)
    assert sum(a.up for a in arms(session, "austen", CONFIG)) == 0
    clear_temperature(session, by_user_id=admin, style="austen")
    value, source = choose_temperature(session, "austen", rng, config=CONFIG)
    assert value in CONFIG.temperatures and source.startswith("bandit: ")


def test_config_is_checked(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[bandit]\ntemperatures = [0.5, 0.9, 0.5]\n")
    with pytest.raises(StorageConfigError, match="bandit.temperatures"):
        load_config(path)
    for grid in ("[0.01, 0.5]", "[0, 0.5]", "[0.5, 5.5]", "[1e-300, 0.5]"):
        # an arm the sampler refuses would fail every text that draws it
        path.write_text(f"[bandit]\ntemperatures = {grid}\n")
        with pytest.raises(StorageConfigError, match=r"bandit.temperatures: .* from 0.05 to 5"):
            load_config(path)
    path.write_text("[bandit]\ntemperatures = [1.1, 0.3]\nexplore = 0.1\n")
    assert load_config(path) == BanditConfig((0.3, 1.1), 0.1, 60.0, 60.0)
    path.write_text("[bandit]\ntemperatures = [0.05, 5]\n")  # the sampler's bounds
    assert load_config(path).temperatures == (0.05, 5.0)
    assert load_config(tmp_path / "missing.toml") == BanditConfig()


def test_per_request_counts_are_cached_per_process(session, record):
    cached = BanditConfig(temperatures=(0.5, 0.9), explore=0.0, cache_seconds=3600)
    rng = np.random.default_rng(5)
    choose_temperature(session, "tolstoy", rng, config=cached)  # caches "no ratings"
    for _ in range(30):
        logged = log_request(session, record(style="tolstoy", temperature=0.9))
        rate(session, logged.generation_id, logged.user_id, -1)
    stale = [choose_temperature(session, "tolstoy", rng, config=cached)[1]
             for _ in range(20)]
    assert all(s.endswith("+0/-0") for s in stale)  # the cached counts
    fresh = choose_temperature(session, "tolstoy", rng,
                               config=dataclasses.replace(cached, cache_seconds=0))[1]
    assert fresh in ("bandit: Thompson draw, 0.5 has +0/-0",
                     "bandit: Thompson draw, 0.9 has +0/-30")
