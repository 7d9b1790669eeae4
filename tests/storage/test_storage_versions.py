"""Model versions (register, promote, retire) and training runs, on both backends."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy.exc import IntegrityError

from storage.errors import InvalidInput, NotFound
from storage.models import ModelVersion
from storage.versions import (
    active_model_version,
    finish_training_run,
    get_model_version,
    list_model_versions,
    promote_model_version,
    register_model_version,
    retire_model_version,
    start_training_run,
    training_runs,
)

T0 = dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC)


def register(session, version, style="shakespeare", minutes=0, **kw):
    return register_model_version(session, style=style, version=version,
                                  artifact_path=f"models/{style}/{version}",
                                  created_at=T0 + dt.timedelta(minutes=minutes), **kw)


def test_register_is_a_candidate_and_idempotent(session):
    row = register(session, "shakespeare-20261122T080000-ab12", val_loss=1.31,
                   parent_version="shakespeare-20261121T080000-0000")
    assert (row.status, row.val_loss, row.promoted_at) == ("candidate", 1.31, None)
    assert row.parent_version == "shakespeare-20261121T080000-0000"
    again = register(session, "shakespeare-20261122T080000-ab12")
    assert again.id == row.id
    with pytest.raises(InvalidInput, match="already registered for style shakespeare"):
        register(session, "shakespeare-20261122T080000-ab12", style="austen")
    with pytest.raises(InvalidInput, match="val_loss must be a finite number"):
        register(session, "shakespeare-x", val_loss=math.nan)
    with pytest.raises(InvalidInput, match="aware datetime"):
        register_model_version(session, style="shakespeare", version="shakespeare-y",
                               artifact_path="m", created_at=dt.datetime(2026, 1, 1))


def test_promotion_retires_the_previous_active_version(session):
    register(session, "v1")
    register(session, "v2", minutes=1)
    register(session, "a1", style="austen")
    assert active_model_version(session, "shakespeare") is None
    assert promote_model_version(session, "v1") is None
    assert promote_model_version(session, "a1") is None  # another style: independent
    previous = promote_model_version(session, "v2")
    assert previous.version == "v1" and previous.status == "retired"
    assert previous.retired_at is not None
    active = active_model_version(session, "shakespeare")
    assert active.version == "v2" and active.promoted_at is not None
    assert promote_model_version(session, "v2") is None  # already active: nothing changes
    assert promote_model_version(session, "v1").version == "v2"  # roll back to v1
    assert get_model_version(session, "v1").status == "active"
    assert active_model_version(session, "austen").version == "a1"


def test_listing_and_retiring(session):
    for i in range(3):
        register(session, f"v{i}", minutes=i)
    promote_model_version(session, "v2")
    assert [v.version for v in list_model_versions(session, "shakespeare")] == [
        "v2", "v1", "v0"]
    assert [v.version for v in list_model_versions(session, "shakespeare",
                                                   status="active")] == ["v2"]
    assert retire_model_version(session, "v2").status == "retired"
    assert active_model_version(session, "shakespeare") is None
    with pytest.raises(InvalidInput, match="status must be one of"):
        list_model_versions(session, "shakespeare", status="dead")
    with pytest.raises(NotFound, match="no model version 'nope'"):
        promote_model_version(session, "nope")


def test_the_database_allows_one_active_version_per_style(session):
    register(session, "v1")
    register(session, "v2")
    promote_model_version(session, "v1")
    get_model_version(session, "v2").status = "active"  # bypassing promote
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_training_run_lifecycle(session):
    run = start_training_run(session, style="austen", trigger="schedule",
                             budget_minutes=6)
    assert (run.status, run.finished_at, run.budget_minutes) == ("running", None, 6.0)
    done = finish_training_run(session, run.id, status="succeeded",
                               metrics={"val_loss_nats": 1.21, "steps": [1, 2]},
                               model_version="austen-20261122T080000-ab12")
    assert done.status == "succeeded" and done.finished_at >= done.started_at
    session.expire_all()
    assert training_runs(session, style="austen")[0].metrics == {
        "val_loss_nats": 1.21, "steps": [1, 2]}
    with pytest.raises(InvalidInput, match="already finished"):
        finish_training_run(session, run.id, status="failed")


def test_failed_runs_keep_their_error_and_runs_are_listed(session):
    admin_run = start_training_run(session, style="sotu", trigger="admin")
    failed = finish_training_run(session, admin_run.id, status="failed",
                                 error="out of memory\x00")
    assert failed.error == "out of memory\ufffd"
    start_training_run(session, style="sotu", trigger="manual")
    assert [r.status for r in training_runs(session, style="sotu")] == ["running", "failed"]
    assert [r.id for r in training_runs(session, status="failed")] == [admin_run.id]


@pytest.mark.parametrize("call, fragment", [
    (lambda s: start_training_run(s, style="austen", trigger="cron"), "trigger must be"),
    (lambda s: start_training_run(s, style="", trigger="admin"), "bad style"),
    (lambda s: finish_training_run(s, 999, status="failed"), "no training run 999"),
    (lambda s: finish_training_run(s, 1, status="running"), "not running"),
    (lambda s: finish_training_run(
        s, start_training_run(s, style="a", trigger="admin").id, status="succeeded",
        metrics={"loss": math.nan}), "finite numbers"),
])
def test_bad_bookkeeping_is_refused(session, call, fragment):
    with pytest.raises((InvalidInput, NotFound), match=fragment):
        call(session)


def test_model_version_table_holds_registry_fields():
    columns = set(ModelVersion.__table__.columns.keys())
    assert {"style", "version", "artifact_path", "val_loss", "parent_version", "status",
            "created_at", "promoted_at"} <= columns
