"""Bookkeeping for the model registry and the scheduler: model versions and training runs.

A version is registered as a candidate, promoted to active (retiring the style's active
one in the same transaction) and may be retired. A partial unique index guarantees at
most one active version per style even if two promotions race.

    from storage.versions import register_model_version, promote_model_version
    register_model_version(session, style="austen", version=v, artifact_path="models/austen")
    promote_model_version(session, v)
"""
from __future__ import annotations

import datetime as dt
import json
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.errors import InvalidInput, NotFound
from storage.models import (
    STYLE_LEN,
    VERSION_LEN,
    ModelVersion,
    RunStatus,
    RunTrigger,
    TrainingRun,
    VersionStatus,
    utcnow,
)
from storage.records import MAX_ERROR_CHARS, check_choice, check_float, clean_text

SHA256 = re.compile(r"[0-9a-f]{64}")


def register_model_version(session: Session, *, style: str, version: str,
                           artifact_path: str, val_loss: float | None = None,
                           parent_version: str | None = None,
                           created_at: dt.datetime | None = None,
                           sha256: str | None = None) -> ModelVersion:
    """Add a candidate version; registering the same version again returns the existing row.

    ``artifact_path``: a folder or a model-store location; ``sha256``: the artifact's
    digest, checked by every machine that downloads it."""
    if not style or len(style) > STYLE_LEN or not version or len(version) > VERSION_LEN:
        raise InvalidInput(f"bad style {style!r} or version {version!r}")
    if sha256 is not None and not SHA256.fullmatch(sha256):
        raise InvalidInput(f"sha256 must be 64 lowercase hex digits, not {sha256[:80]!r}")
    if created_at is not None and created_at.tzinfo is None:
        raise InvalidInput("created_at must be an aware datetime")
    existing = session.execute(
        select(ModelVersion).where(ModelVersion.version == version)).scalar_one_or_none()
    if existing is not None:
        if existing.style != style:
            raise InvalidInput(f"version {version} is already registered for style "
                               f"{existing.style}, not {style}")
        return existing
    row = ModelVersion(style=style, version=version, artifact_path=str(artifact_path),
                       val_loss=check_float("val_loss", val_loss),
                       parent_version=parent_version, status=VersionStatus.CANDIDATE.value,
                       created_at=created_at or utcnow(), sha256=sha256)
    session.add(row)
    session.flush()
    return row


def get_model_version(session: Session, version: str) -> ModelVersion:
    row = session.execute(
        select(ModelVersion).where(ModelVersion.version == version)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no model version {version!r}")
    return row


def active_model_version(session: Session, style: str) -> ModelVersion | None:
    return session.execute(select(ModelVersion).where(
        ModelVersion.style == style,
        ModelVersion.status == VersionStatus.ACTIVE.value)).scalar_one_or_none()


def list_model_versions(session: Session, style: str,
                        status: str | None = None) -> list[ModelVersion]:
    """The style's versions, newest first, optionally of one status."""
    stmt = select(ModelVersion).where(ModelVersion.style == style)
    if status is not None:
        stmt = stmt.where(ModelVersion.status == check_choice("status", status,
                                                              VersionStatus))
    stmt = stmt.order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    return list(session.execute(stmt).scalars())


def promote_model_version(session: Session, version: str) -> ModelVersion | None:
    """Make ``version`` its style's active one; the version it replaced, or None."""
    row = get_model_version(session, version)
    # Lock the style's versions so a concurrent promotion waits (PostgreSQL).
    session.execute(select(ModelVersion.id).where(ModelVersion.style == row.style)
                    .with_for_update())
    session.refresh(row)
    if row.status == VersionStatus.ACTIVE.value:
        return None
    previous = active_model_version(session, row.style)
    now = utcnow()
    if previous is not None:
        previous.status, previous.retired_at = VersionStatus.RETIRED.value, now
        session.flush()  # retire first: the unique index allows one active per style
    row.status, row.promoted_at, row.retired_at = VersionStatus.ACTIVE.value, now, None
    session.flush()
    return previous


def retire_model_version(session: Session, version: str) -> ModelVersion:
    """Take a version out of service (the style then has no active version)."""
    row = get_model_version(session, version)
    if row.status != VersionStatus.RETIRED.value:
        row.status, row.retired_at = VersionStatus.RETIRED.value, utcnow()
        session.flush()
    return row


def start_training_run(session: Session, *, style: str, trigger: str,
                       budget_minutes: float | None = None,
                       requested_by_user_id: int | None = None) -> TrainingRun:
    """Record that a training run started; finish it with ``finish_training_run``."""
    if not style or len(style) > STYLE_LEN:
        raise InvalidInput(f"bad style {style!r}")
    now = utcnow()
    run = TrainingRun(style=style, trigger=check_choice("trigger", trigger, RunTrigger),
                      status=RunStatus.RUNNING.value,
                      budget_minutes=check_float("budget_minutes", budget_minutes),
                      requested_by_user_id=requested_by_user_id, started_at=now,
                      heartbeat_at=now)
    session.add(run)
    session.flush()
    return run


def finish_training_run(session: Session, run_id: int, *, status: str,
                        metrics: dict | None = None, error: str | None = None,
                        model_version: str | None = None) -> TrainingRun:
    """Close a running run as succeeded, failed or cancelled, with its metrics or error."""
    check_choice("status", status, RunStatus)
    if status == RunStatus.RUNNING.value:
        raise InvalidInput("finish a run as succeeded, failed or cancelled, not running")
    run = session.get(TrainingRun, run_id, with_for_update=True)
    if run is None:
        raise NotFound(f"no training run {run_id}")
    if run.status != RunStatus.RUNNING.value:
        raise InvalidInput(f"training run {run_id} already finished ({run.status})")
    run.status, run.finished_at, run.model_version = status, utcnow(), model_version
    run.metrics = _json_safe(metrics)
    run.error = None if error is None else clean_text(error, MAX_ERROR_CHARS)
    session.flush()
    return run


def _json_safe(metrics: dict | None) -> dict | None:
    if metrics is None:
        return None
    try:  # PostgreSQL's json refuses NaN; SQLite would store it and fail on reading.
        return json.loads(json.dumps(metrics, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metrics must be JSON with finite numbers: {exc}") from None


def training_runs(session: Session, style: str | None = None,
                  status: str | None = None, limit: int = 20) -> list[TrainingRun]:
    """Runs, newest first, optionally of one style and one status."""
    stmt = select(TrainingRun)
    if style is not None:
        stmt = stmt.where(TrainingRun.style == style)
    if status is not None:
        stmt = stmt.where(TrainingRun.status == check_choice("status", status, RunStatus))
    stmt = stmt.order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc())
    return list(session.execute(stmt.limit(limit)).scalars())
