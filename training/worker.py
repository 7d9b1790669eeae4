"""A training worker: takes runs from the queue and trains them one at a time.

    python -m training.worker        # until SIGINT/SIGTERM (Procfile: worker)

Needs a broker (``[queue] url`` or ``QUEUE_URL``, training/tasks.py). Start K of them,
on one machine or many: each holds one message at a time (one Dramatiq thread, a
prefetch of one) and trains it in a subprocess exactly as the scheduler does without a
broker (training/retrain.py), the child dying with the worker even by ``kill -9``.

A message is acknowledged only when its run ended, so RabbitMQ gives the message of a
worker that died to another one. Whether that one trains is decided by the run's row,
never by the message (``claim``):

* queued: taken (queued -> running, attempt 1), in one conditional UPDATE;
* running with a live lease (its worker keeps ``heartbeat_at`` fresh): not taken; the
  message comes back after the lease would have run out (``dramatiq.Retry``), so a run
  is never trained twice at once;
* running with an expired lease (its worker died): taken over as the next attempt, or
  failed once it has had ``[queue] attempts`` (2: retried once);
* finished: dropped.

A killed attempt published nothing (promotion is the last step of a run), so the served
model stays as it was. SIGTERM stops the running child, whose run fails as stopped, and
the worker exits within seconds.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import signal
import sys
import threading
from dataclasses import dataclass

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from storage.models import RunStatus, TrainingRun, utcnow
from storage.upsert import rows_affected
from training import registry_ops
from training.retrain import Retrainer
from training.tasks import QueueSettings, TrainingQueue, age_s

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """What to do with a message: "run" (attempt N), "wait" (delay_s) or "drop"."""

    action: str
    attempt: int = 0
    delay_s: float = 0.0
    why: str = ""
    style: str = ""
    trigger: str = ""
    minutes: float | None = None
    by_user_id: int | None = None


def claim(session: Session, run_id: int, lease_s: float, attempts: int) -> Claim:
    """Take run ``run_id`` for this worker if nobody live holds it (see the module doc)."""
    run = session.get(TrainingRun, run_id)
    if run is None:
        return Claim("drop", why="no such run")
    now = utcnow()
    stale = func.coalesce(TrainingRun.heartbeat_at, TrainingRun.started_at) \
        < now - dt.timedelta(seconds=lease_s)
    if run.status == RunStatus.QUEUED.value:
        attempt, where = 1, TrainingRun.status == RunStatus.QUEUED.value
    elif run.status != RunStatus.RUNNING.value:
        return Claim("drop", why=f"already {run.status}")
    elif (age := age_s(run, now)) < lease_s:
        return Claim("wait", delay_s=lease_s - age + 0.5, why="a live worker holds it")
    else:
        attempt = registry_ops.attempt_of(run) + 1
        where = (TrainingRun.status == RunStatus.RUNNING.value) & stale
    if attempt > attempts:  # its last attempt's worker died too
        error = (f"interrupted: its worker stopped beating for over {lease_s:g} s, "
                 f"{attempts} attempt{'s' * (attempts > 1)} made")
        failed = rows_affected(session, update(TrainingRun).where(
            TrainingRun.id == run_id, where).values(
            status=RunStatus.FAILED.value, finished_at=now, error=error)
            .execution_options(synchronize_session=False))
        return Claim("drop", why=error if failed else "taken by another worker")
    # The same conditions as read above: of two workers, exactly one sees rowcount 1.
    taken = rows_affected(session, update(TrainingRun).where(
        TrainingRun.id == run_id, where).values(
        status=RunStatus.RUNNING.value, heartbeat_at=now, metrics={"attempt": attempt},
        **({"started_at": now} if attempt == 1 else {}))
        .execution_options(synchronize_session=False))
    if not taken:
        return Claim("wait", delay_s=lease_s, why="another worker took it first")
    return Claim("run", attempt, style=run.style, trigger=run.trigger,
                 minutes=run.budget_minutes, by_user_id=run.requested_by_user_id)


@dataclass
class _Worker:
    retrainer: Retrainer
    cfg: QueueSettings


_worker: _Worker | None = None  # the actor is a plain function; it finds its tools here


def handle(run_id: int) -> None:
    """The actor: train run ``run_id`` if this worker may (``claim``)."""
    import dramatiq

    if _worker is None:
        raise RuntimeError("no training worker is running in this process")
    retrainer, cfg = _worker.retrainer, _worker.cfg
    if retrainer.stopping.is_set():  # back to the queue for a worker that stays
        raise dramatiq.Retry(f"run {run_id}: this worker is stopping", delay=0)
    with retrainer.sessions.begin() as s:
        got = claim(s, run_id, cfg.lease_seconds, cfg.attempts)
    if got.action == "drop":
        log.info("run %d: not trained (%s)", run_id, got.why)
        return
    if got.action == "wait":
        log.info("run %d: %s; looking again in %.0f s", run_id, got.why, got.delay_s)
        raise dramatiq.Retry(f"run {run_id}: {got.why}", delay=int(got.delay_s * 1000))
    if got.attempt > 1:
        log.warning("run %d (%s): its worker died; attempt %d of %d", run_id, got.style,
                    got.attempt, cfg.attempts)
        # The dead attempt's scratch folder: nobody else removes it while the run runs.
        shutil.rmtree(retrainer.registry_root / got.style / f".work-{run_id}",
                      ignore_errors=True)
    else:
        log.info("run %d (%s): training", run_id, got.style)
    retrainer.run(got.style, got.trigger, run_id=run_id, minutes=got.minutes,
                  by_user_id=got.by_user_id, attempt=got.attempt, lease_s=cfg.lease_seconds)


def serve(retrainer: Retrainer, cfg: QueueSettings,
          stop: threading.Event | None = None) -> None:
    """Take runs until ``stop`` is set (SIGINT/SIGTERM when not given)."""
    import dramatiq

    global _worker
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    queue = TrainingQueue(cfg, handler=handle)
    _worker = _Worker(retrainer, cfg)
    worker = dramatiq.Worker(queue.broker, queues={cfg.name}, worker_threads=1)
    # One message held at a time: a busy worker keeps none back from an idle one.
    worker.queue_prefetch = 1
    worker.start()
    log.info("training worker ready on %s", cfg.where())
    try:
        stop.wait()
    finally:
        log.info("stopping: ending a running training, if any")
        retrainer.stop()  # its run fails as stopped and its message is acknowledged
        worker.stop(timeout=30_000)
        queue.close()
        _worker = None


def main(argv: list[str] | None = None) -> int:
    from sqlalchemy.exc import DBAPIError

    import settings
    from genmodels.cli import OneLineParser, fail
    from genmodels.styles import ConfigError
    from settings.logs import setup_logging
    from storage.engine import database_url, describe, make_engine, session_factory
    from training import tasks
    from training.schedule_config import load_schedule

    p = OneLineParser(prog="python -m training.worker", description=__doc__.split("\n")[0])
    p.parse_args(argv)
    try:  # $LOG_FORMAT=json: one JSON object a line
        setup_logging(logging.INFO, "%(asctime)s %(name)s: %(message)s")
        book, schedule = load_schedule()
        cfg = tasks.configured(settings.load(), schedule.heartbeat_seconds)
    except (ValueError, ConfigError) as exc:
        return fail(str(exc))
    if cfg is None:
        return fail("no broker: set [queue] url in config.toml or QUEUE_URL "
                    "(without one, python -m training.scheduler trains itself)")
    logging.getLogger("pika").setLevel(logging.WARNING)
    if (why := tasks.unreachable(cfg)) is not None:
        return fail(why)
    engine = make_engine(database_url())
    try:
        serve(Retrainer(session_factory(engine), book, schedule), cfg)
        return 0
    except DBAPIError as exc:  # unreachable, or not migrated (`python -m storage migrate`)
        reason = (str(exc.orig).strip().splitlines() or ["?"])[0]
        return fail(f"database {describe(database_url())}: {reason}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
