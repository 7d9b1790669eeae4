"""Model registry operations shared by the scheduler and the chat core's admin commands.

The registry is the ``model_versions`` rows (storage/versions.py: status, val loss,
lineage, sha256) and the artifacts they name. The active row of a style is the truth;
on one machine (no ``[store] url``) the artifacts are folders ``var/models/STYLE/VERSION/``
and the ``ACTIVE`` marker that serving reads (genmodels/registry.py) is written in the
same transaction; with an object store (genmodels/store.py) the rows name
``s3://...`` locations and every inference process follows the active row itself
(serving/model_follow.py), so promotion and rollback are that one transaction. This
module is NumPy- and TensorFlow-free, so the chat process may import it; every function
taking a ``session`` is a unit of work for ``Database.run`` (it only flushes; the caller
commits). ``store``: the model store (default: config.toml's, ``open_store``).

    await db.run(rollback, "austen")            # -> ("austen-...new", "austen-...old")
    await db.run(queue_retrain, "austen", by_user_id=admin_id)
    for v in await db.run(list_versions, "austen"): print(v.line())

A running run belongs to the scheduler that refreshes its ``heartbeat_at`` (``beat``,
every ``[schedule] heartbeat_seconds``). One whose heartbeat is older than
``LEASE_SECONDS`` lost its scheduler (killed, machine gone): ``fail_stale`` fails it,
and every caller that looks at running runs calls it first (``queue_retrain``, the
scheduler at start), so a dead scheduler blocks /retrain for one lease at most. A
scheduler starting beside a live one leaves that one's runs alone.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from genmodels import registry
from genmodels.store import Store, StoreError, open_store
from storage.errors import InvalidInput, NotFound
from storage.models import (
    STYLE_LEN,
    ModelVersion,
    RunStatus,
    RunTrigger,
    TrainingRun,
    VersionStatus,
    utcnow,
)
from storage.records import check_float
from storage.stats import version_stats
from storage.upsert import rows_affected
from storage.versions import (
    active_model_version,
    get_model_version,
    list_model_versions,
    promote_model_version,
)

LEASE_SECONDS = 60.0  # a running run whose heartbeat is older than this is failed
UNFINISHED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
WORK_DIR = re.compile(r"^\.work-(\d+)$")  # a run's scratch folder: STYLE/.work-RUN_ID


def remote(row: ModelVersion) -> bool:
    """Whether the row names a place in an object store rather than a folder here."""
    return row.artifact_path.startswith("s3://")


def on_disk(row: ModelVersion, store: Store | None = None) -> bool:
    """Its artifact is there: the folder on this machine, or the object in the store."""
    if not remote(row):
        return (Path(row.artifact_path) / "model.json").is_file()
    store = store or open_store()
    return store.remote and store.has(row.artifact_path)


def fetch(row: ModelVersion, store: Store | None = None) -> Path:
    """A local folder holding ``row``'s artifact, checked against its recorded sha256
    and loaded once (``StoreError``: missing, corrupted, NaN or inf weights)."""
    if not remote(row):
        from genmodels.store import LocalStore

        return LocalStore().fetch(row.artifact_path, row.sha256)
    store = store or open_store()
    if not store.remote:
        raise StoreError(f"{row.artifact_path}: no object store is configured "
                         f"([store] url) to fetch it from")
    return store.fetch(row.artifact_path, row.sha256)


def servable(row: ModelVersion, store: Store | None = None) -> bool:
    """Present, matching its sha256 and loading (no NaN or inf weights): fit to activate."""
    from genmodels.artifact import ArtifactError, load  # NumPy only when rolling back

    if not on_disk(row, store):
        return False
    try:
        load(fetch(row, store))
    except (ArtifactError, StoreError):
        return False
    return True


def mark_active(row: ModelVersion, root: Path | None = None) -> Path:
    """Point the style's ACTIVE marker at ``row``'s folder (``registry.activate``: the
    version is loaded first, a corrupt one refused). ``root``: the registry, else the
    one the folder is in (``root/STYLE/VERSION``)."""
    folder = Path(row.artifact_path)
    return registry.activate(row.style, folder.name,
                             root=folder.parent.parent if root is None else root)


def promote(session: Session, version: str, root: Path | None = None,
            store: Store | None = None) -> ModelVersion:
    """Serve ``version``: its row becomes the style's active one (the previous one is
    retired); a version in a folder also gets the ACTIVE marker pointed at it.

    The one place a version is promoted (a retrain's winner, the served model
    registered, a rollback). The version is checked first (its sha256, finite weights;
    one in the store is fetched to do so), and the marker is written after the row
    change is flushed, inside the caller's transaction: if either fails, nothing
    changes. Inference processes following the database see it at commit.
    """
    promote_model_version(session, version)
    row = get_model_version(session, version)
    if remote(row):
        fetch(row, store)  # what every machine will download: refuse it here if broken
    else:
        if row.sha256 is not None:
            fetch(row, store)
        mark_active(row, root)
    return row


def rollback(session: Session, style: str, root: Path | None = None,
             store: Store | None = None) -> tuple[str, str]:
    """Re-activate the version before the active one; (from_version, to_version).

    "Before" is by creation time among versions that were once active and are still on
    disk or in the store and load (a corrupt one is skipped), so repeated rollbacks walk
    back through history instead of flipping between two versions. The DB row and the
    ACTIVE marker change together (``promote``); any machine sharing the database and
    the store may roll back.
    """
    current = active_model_version(session, style)
    if current is None:
        raise NotFound(f"{style} has no active registered version to roll back from")
    earlier = session.execute(select(ModelVersion).where(
        ModelVersion.style == style, ModelVersion.status == VersionStatus.RETIRED.value,
        ModelVersion.promoted_at.is_not(None), ModelVersion.created_at < current.created_at)
        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())).scalars()
    target = next((row for row in earlier if servable(row, store)), None)
    if target is None:
        where = "in the store" if remote(current) else "on disk"
        raise NotFound(f"{style} has no earlier version {where} to roll back to")
    promote(session, target.version, root, store)
    return current.version, target.version


@dataclass(frozen=True)
class VersionInfo:
    """One line of ``/models STYLE``."""

    version: str
    status: str
    val_loss: float | None
    parent_version: str | None
    created_at: dt.datetime
    promoted: bool  # was active at some time
    on_disk: bool  # or in the store, for a version kept there
    requests: int = 0
    up: int = 0
    down: int = 0
    in_store: bool = False  # kept in the object store, not in a folder

    def line(self) -> str:
        loss = "?" if self.val_loss is None else f"{self.val_loss:.4f}"
        mark = {"active": "*", "candidate": "?", "retired": " "}.get(self.status, " ")
        gone = "" if self.on_disk else (", missing from the store" if self.in_store
                                         else ", removed from disk")
        return (f"{mark} {self.version}  val {loss} nats/char  +{self.up}/-{self.down} "
                f"({self.requests} requests)  {self.status}{gone}")


def list_versions(session: Session, style: str, limit: int = 20,
                  store: Store | None = None) -> list[VersionInfo]:
    """The style's versions, newest first, with val loss, lineage and ratings."""
    usage = {s.key: s for s in version_stats(session, style=style)}
    out = []
    for row in list_model_versions(session, style)[:limit]:
        u = usage.get(row.version)
        out.append(VersionInfo(row.version, row.status, row.val_loss, row.parent_version,
                               row.created_at, row.promoted_at is not None,
                               on_disk(row, store),
                               u.requests if u else 0, u.up if u else 0, u.down if u else 0,
                               remote(row)))
    return out


def queue_retrain(session: Session, style: str, *, by_user_id: int | None = None,
                  minutes: float | None = None) -> tuple[TrainingRun, bool]:
    """Ask the scheduler to retrain ``style`` soon; (the run row, newly queued?).

    A style already queued or running is not queued twice: its row comes back with
    False, so ``/retrain`` pressed five times trains once. The caller checks that the
    style exists (the core knows the StyleBook); a queued unknown style fails its run.
    """
    if not style or len(style) > STYLE_LEN:
        raise InvalidInput(f"bad style {style[:40]!r}")
    minutes = check_float("minutes", minutes)
    if minutes is not None and not minutes > 0:
        raise InvalidInput("minutes must be positive")
    fail_stale(session)  # a run whose scheduler died must not block this one
    pending = session.execute(select(TrainingRun).where(
        TrainingRun.style == style,
        TrainingRun.status.in_(UNFINISHED)).order_by(TrainingRun.id).limit(1)
    ).scalar_one_or_none()
    if pending is not None:
        return pending, False
    run = TrainingRun(style=style, trigger=RunTrigger.ADMIN.value,
                      status=RunStatus.QUEUED.value, budget_minutes=minutes,
                      requested_by_user_id=by_user_id, started_at=utcnow())
    session.add(run)
    session.flush()
    return run, True


def claim_queued(session: Session) -> TrainingRun | None:
    """The oldest queued run, now marked running (None if none); safe against a race."""
    for run in session.execute(select(TrainingRun).where(
            TrainingRun.status == RunStatus.QUEUED.value).order_by(TrainingRun.id)
            .limit(5)).scalars():
        # Conditional UPDATE: of two pollers, exactly one sees rowcount 1.
        claimed = rows_affected(session, update(TrainingRun).where(
            TrainingRun.id == run.id, TrainingRun.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.RUNNING.value, started_at=utcnow(),
                    heartbeat_at=utcnow()))
        if claimed == 1:
            session.refresh(run)
            return run
    return None


def finished_runs(session: Session, after_id: int = 0, limit: int = 20) -> list[TrainingRun]:
    """Runs finished with an id above ``after_id``, oldest first.

    How a bot in another process than the scheduler hears about runs: remember the
    last id it announced and poll; ``RunResult.from_row(run).message()`` (training/
    retrain.py) is the same line the in-process notifier hook gets.
    """
    return list(session.execute(select(TrainingRun).where(
        TrainingRun.id > after_id,
        TrainingRun.status.in_([RunStatus.SUCCEEDED.value, RunStatus.FAILED.value]))
        .order_by(TrainingRun.id).limit(limit)).scalars())


def claim_notices(session: Session, since: dt.datetime, limit: int = 20
                  ) -> list[TrainingRun]:
    """Runs finished since ``since`` that nobody announced yet, now marked announced.

    Each run is claimed by a conditional ``UPDATE ... WHERE notified_at IS NULL``: of
    two bot replicas polling at once exactly one sees rowcount 1 (PostgreSQL re-checks
    the condition after waiting for the other's row lock; SQLite writes one at a time),
    so each notice is sent once whatever the number of replicas.
    """
    claimed = []
    for run in session.execute(select(TrainingRun).where(
            TrainingRun.notified_at.is_(None), TrainingRun.finished_at >= since,
            TrainingRun.status.in_([RunStatus.SUCCEEDED.value, RunStatus.FAILED.value]))
            .order_by(TrainingRun.id).limit(limit)).scalars().all():
        if rows_affected(session, update(TrainingRun).where(
                TrainingRun.id == run.id, TrainingRun.notified_at.is_(None))
                .values(notified_at=utcnow())) == 1:
            claimed.append(run)
    return claimed


def attempt_of(run: TrainingRun) -> int:
    """Which attempt at the run is (or was last) running: 1 unless a worker retried it."""
    return int((run.metrics or {}).get("attempt", 1))


def beat(session: Session, run_id: int, attempt: int = 1) -> bool:
    """Renew the lease of a running run's ``attempt``; False once the run is no longer
    running that attempt (finished, failed as stale, or taken over by another worker).

    The row is read locked (PostgreSQL; SQLite serialises writers), so a worker taking
    the run over at the same moment waits and then finds the lease renewed."""
    run = session.get(TrainingRun, run_id, with_for_update=True, populate_existing=True)
    if run is None or run.status != RunStatus.RUNNING.value or attempt_of(run) != attempt:
        return False
    run.heartbeat_at = utcnow()
    return True


def fail_stale(session: Session, lease_seconds: float | None = None) -> int:
    """Fail every running run whose heartbeat is older than the lease; how many."""
    lease = LEASE_SECONDS if lease_seconds is None else lease_seconds
    now = utcnow()
    last = func.coalesce(TrainingRun.heartbeat_at, TrainingRun.started_at)
    return rows_affected(session, update(TrainingRun).where(
        TrainingRun.status == RunStatus.RUNNING.value,
        last < now - dt.timedelta(seconds=lease)).values(
        status=RunStatus.FAILED.value, finished_at=now,
        error=f"interrupted: its scheduler stopped beating for over {lease:g} s")
        .execution_options(synchronize_session=False))


def clean_work(session: Session, root: Path) -> list[Path]:
    """Remove the scratch folders (``STYLE/.work-N``) of runs that are not running."""
    found = {int(m[1]): p for p in root.glob("*/.work-*")
             if p.is_dir() and (m := WORK_DIR.match(p.name))}
    if not found:
        return []
    running = set(session.execute(select(TrainingRun.id).where(
        TrainingRun.id.in_(found), TrainingRun.status == RunStatus.RUNNING.value))
        .scalars())
    removed = [path for run_id, path in sorted(found.items()) if run_id not in running]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def prune(session: Session, style: str, keep: int, root: Path | None = None) -> list[str]:
    """Remove version folders beyond the ``keep`` newest; never the active one.

    Rows stay in ``model_versions`` (lineage and ratings history); ``list_versions``
    shows them as removed from disk and rollback skips them.
    """
    folder = (root or registry.registry_root()) / style
    if keep < 1 or not folder.is_dir():
        return []
    active = registry.active_path(style, root=root or registry.registry_root()).name
    db_active = active_model_version(session, style)
    protected = {active} | ({db_active.version} if db_active else set())
    versions = sorted((p for p in folder.iterdir()
                       if p.is_dir() and not p.name.startswith(".")
                       and (p / "model.json").is_file()),
                      key=lambda p: (p / "model.json").stat().st_mtime, reverse=True)
    removed = []
    for path in versions[keep:]:
        if path.name not in protected:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed
