"""A training run's lease: only the attempt holding a run renews it, and a process that
loses it (the run taken over by another worker, or no heartbeat stored for the lease)
hears so once. On SQLite and the local PostgreSQL; the retrainer's side (its child
ended, nothing recorded) is in test_retrain.py.

    .venv/bin/python -m pytest tests/training/test_lease.py -q
"""
from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import update

from storage.engine import make_engine, session_factory
from storage.models import TrainingRun, utcnow
from storage.versions import start_training_run
from tests.databases import BACKENDS, migrated
from training import registry_ops
from training.lifecycle import Heartbeat, LeaseLost
from training.worker import claim


@pytest.fixture(params=BACKENDS)
def sessions(request, tmp_path):
    for url in migrated(request.param, tmp_path, "lease"):
        engine = make_engine(url)
        yield session_factory(engine)
        engine.dispose()


def started_run(sessions) -> int:
    with sessions.begin() as s:
        return start_training_run(s, style="tiny", trigger="schedule").id


def take_over(sessions, run_id: int) -> None:
    """What another worker does to a run whose lease ran out: its claim makes it
    attempt 2. One transaction, so the holder's heartbeat cannot renew in between."""
    with sessions.begin() as s:
        s.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(
            heartbeat_at=utcnow() - dt.timedelta(hours=1)))
        got = claim(s, run_id, lease_s=60, attempts=2)
    assert (got.action, got.attempt) == ("run", 2), got


def test_only_the_attempt_holding_the_run_renews_its_lease(sessions):
    run_id = started_run(sessions)
    with sessions.begin() as s:
        assert registry_ops.beat(s, run_id, attempt=1)
    take_over(sessions, run_id)
    with sessions.begin() as s:
        assert not registry_ops.beat(s, run_id, attempt=1)
        assert registry_ops.beat(s, run_id, attempt=2)
    with sessions.begin() as s:
        assert not registry_ops.beat(s, run_id + 1)  # no such run


def test_a_run_taken_over_is_lost_once_and_cannot_be_confirmed(sessions):
    run_id, calls = started_run(sessions), []
    with Heartbeat(sessions, run_id, every_s=0.05, on_lost=lambda: calls.append(1)) as hb:
        time.sleep(0.3)  # several beats while it holds the run
        assert not hb.lost.is_set()
        take_over(sessions, run_id)
        assert hb.lost.wait(10)
        with pytest.raises(LeaseLost, match="no longer this attempt's"), \
                sessions.begin() as s:
            hb.confirm(s)
    assert calls == [1]
    with sessions.begin() as s:  # the new attempt's lease is untouched
        run = s.get(TrainingRun, run_id)
        assert (run.status, registry_ops.attempt_of(run)) == ("running", 2)


def test_a_held_run_is_confirmed_inside_the_callers_transaction(sessions):
    run_id = started_run(sessions)
    hb = Heartbeat(sessions, run_id, every_s=60)
    with sessions.begin() as s:
        before = s.get(TrainingRun, run_id).heartbeat_at
    time.sleep(0.01)
    with sessions.begin() as s:
        hb.confirm(s)
    with sessions.begin() as s:
        assert s.get(TrainingRun, run_id).heartbeat_at > before
    assert not hb.lost.is_set()


def test_cut_off_from_the_database_past_the_lease_the_run_is_lost(tmp_path):
    # A real database that cannot be reached: its folder does not exist.
    engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'bot.db'}")
    calls = []
    try:
        with Heartbeat(session_factory(engine), 1, every_s=0.05, lease_s=0.3,
                       on_lost=lambda: calls.append(1)) as hb:
            assert hb.lost.wait(10)
    finally:
        engine.dispose()
    assert calls == [1]
    assert "no heartbeat stored for 0.3 s" in hb.why
