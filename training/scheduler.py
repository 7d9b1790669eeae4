"""The retraining scheduler: nightly retrains, queued /retrain requests, bandit updates.

    python -m training.scheduler                    # run until SIGINT/SIGTERM (Procfile)
    python -m training.scheduler --list             # every job and its next run time
    python -m training.scheduler --run-now STYLE [--minutes M]   # one retrain, then exit

APScheduler 3 keeps its jobs in our database (SQLAlchemyJobStore, table
``apscheduler_jobs``), so they survive a restart; every start re-applies config.toml
``[schedule]`` with fixed job ids and ``replace_existing``, so restarts never double a job
and a changed cron takes effect. Jobs: ``retrain:STYLE`` (cron, jittered so styles do not
all start at once), ``poll-queue`` (claims runs ``/retrain`` queued) and
``bandit-nightly`` (storage/bandit.py). Each job has ``max_instances=1``, ``coalesce``
and a misfire grace time. Training runs in a subprocess (training/retrain.py) that dies
with the scheduler, even by ``kill -9``; SIGTERM stops it and fails its run, then the
scheduler exits within seconds. At start, runs whose lease expired (their scheduler
died) are failed and scratch folders of runs not running are removed; a run another
live scheduler keeps beating is left alone.

Any number of scheduler processes may run on one database: exactly one leads
(storage/leadership.py: a PostgreSQL advisory lock, or a lease row on SQLite) and runs
the jobs; the others start no APScheduler at all and ask every few seconds, taking over
within ``leadership.EVERY_S`` (PostgreSQL) or the lease (SQLite, ``LEASE_S``) once the
leader dies. A leader that loses the lead (its database connection dropped) stops its
training, whose run fails as "stopped", and waits to lead again with a fresh
scheduler. A run's own lease (its heartbeat) is separate: a new leader fails only runs
whose heartbeat expired, never a run because it started. ``--list`` and ``--run-now``
need no lead (the first only reads, the second is a manual run). An in-process
``StyleScheduler`` (``asyncio=True``) does not take part: run it only where no
scheduler process runs.

With a broker (``[queue] url`` or ``QUEUE_URL``, training/tasks.py) the leader trains
nothing itself: a nightly job queues its style's run, and the poll job sends queued runs
(nightly and ``/retrain`` alike) to the training queue, each variant only after its
parent's run finished; ``python -m training.worker`` processes train them. Without
one, the default, everything runs here as described above.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

import settings
from storage import bandit
from storage.engine import database_url, describe, make_engine, session_factory
from storage.leadership import Leadership
from training import registry_ops, tasks
from training.retrain import Retrainer
from training.schedule_config import load_schedule

log = logging.getLogger(__name__)
POLL_JOB, BANDIT_JOB, RETRAIN_PREFIX = "poll-queue", "bandit-nightly", "retrain:"


@dataclass
class _Context:
    retrainer: Retrainer
    rng: np.random.Generator
    queue: tasks.TrainingQueue | None = None  # a broker: runs are sent, not trained here


_context: _Context | None = None  # jobs are stored by reference; they find their tools here


def _ctx() -> _Context:
    if _context is None:
        raise RuntimeError("no StyleScheduler is running in this process")
    return _context


def retrain_job(style: str) -> None:
    """Cron job: retrain one style (with a broker: queue its run and send it)."""
    ctx = _ctx()
    if ctx.queue is None:
        ctx.retrainer.run(style, trigger="schedule")
        return
    with ctx.retrainer.sessions.begin() as s:
        run, new = tasks.queue_run(s, style, trigger="schedule",
                                   minutes=ctx.retrainer.schedule.for_style(style).minutes)
        run_id = run.id
    if not new:
        log.info("retrain %s: run %d is queued or running already", style, run_id)
    _send_queued(ctx)


def _send_queued(ctx: _Context) -> None:
    assert ctx.queue is not None
    try:
        tasks.dispatch(ctx.retrainer.sessions, ctx.retrainer.book, ctx.queue.send)
    except Exception as exc:  # noqa: BLE001 - the rows stay queued; the next poll sends
        log.warning("training queue %s: %s; queued runs wait for the next poll",
                    ctx.queue.cfg.where(), exc)


def poll_job() -> None:
    """Interval job: run every queued /retrain request, oldest first (with a broker:
    send every queued run whose parent's run finished)."""
    ctx = _ctx()
    if ctx.queue is not None:
        _send_queued(ctx)
        return
    retrainer = ctx.retrainer
    while not retrainer.stopping.is_set():
        with retrainer.sessions.begin() as s:
            run = registry_ops.claim_queued(s)
            claimed = None if run is None else (run.id, run.style, run.budget_minutes,
                                                run.requested_by_user_id)
        if claimed is None:
            return
        run_id, style, minutes, user = claimed
        retrainer.run(style, trigger="admin", run_id=run_id, minutes=minutes, by_user_id=user)


def bandit_job() -> None:
    """Nightly job: store each style's learned temperature (storage/bandit.py)."""
    ctx = _ctx()
    with ctx.retrainer.sessions.begin() as s:
        chosen = bandit.update_defaults(s, ctx.retrainer.book.names(), ctx.rng)
    log.info("bandit temperatures: %s", chosen or "no ratings yet")


class StyleScheduler:
    """APScheduler with our job store and jobs; ``start()`` / ``shutdown()``."""

    def __init__(self, url: str | None = None, config: Path | None = None, *,
                 asyncio: bool = False, root: Path | None = None,
                 env: dict[str, str] | None = None):
        self.url = url or database_url()
        self._args = (config, asyncio, root, dict(env or {}))  # for again()
        self.book, self.schedule = load_schedule(config)
        queue = tasks.configured(settings.load(self.book.path), self.schedule.heartbeat_seconds)
        self.queue = None if queue is None else tasks.TrainingQueue(queue)
        self.engine = make_engine(self.url)
        self.retrainer = Retrainer(session_factory(self.engine), self.book, self.schedule,
                                   root=root, env=dict(env or {}))
        options = {"jobstores": {"default": SQLAlchemyJobStore(engine=self.engine)}}
        if not asyncio:  # one worker: trainings queue behind each other, never compete
            options["executors"] = {"default": {"type": "threadpool", "max_workers": 1}}
        # AsyncIOScheduler runs these plain functions in the loop's default executor, so
        # a training (minutes) never blocks the bot's event loop.
        self.scheduler = (AsyncIOScheduler if asyncio else BackgroundScheduler)(**options)

    def start(self, paused: bool = False) -> None:
        """Start, (re)apply the schedule; unless paused, fail runs whose scheduler died
        (lease expired) and remove scratch folders of runs that are not running."""
        global _context
        _context = _Context(self.retrainer, np.random.default_rng(), self.queue)
        if not paused:
            with self.retrainer.sessions.begin() as s:
                n = registry_ops.fail_stale(s)
            if n:
                log.warning("marked %d training runs failed: their scheduler died", n)
            self.retrainer.clean_work()
        self.scheduler.start(paused=True)  # paused while the jobs are brought up to date
        self.sync_jobs()
        if not paused:
            self.scheduler.resume()

    def sync_jobs(self) -> None:
        """Add or update every configured job; remove jobs of styles no longer scheduled."""
        s = self.schedule
        wanted = {POLL_JOB, BANDIT_JOB}
        for name, plan in s.styles.items():
            if plan.enabled:
                trigger = CronTrigger.from_crontab(plan.cron)
                trigger.jitter = s.jitter_seconds or None
                wanted.add(RETRAIN_PREFIX + name)
                self._ensure(RETRAIN_PREFIX + name, "training.scheduler:retrain_job",
                             trigger, [name], f"retrain {name}")
        self._ensure(POLL_JOB, "training.scheduler:poll_job",
                     IntervalTrigger(seconds=s.poll_seconds), [], "run queued /retrain")
        self._ensure(BANDIT_JOB, "training.scheduler:bandit_job",
                     CronTrigger.from_crontab(s.nightly_bandit), [], "learn temperatures")
        for job in self.scheduler.get_jobs():
            if job.id not in wanted:
                log.info("removing job %s (no longer in config.toml)", job.id)
                job.remove()

    def _ensure(self, job_id: str, func: str, trigger, args: list, name: str) -> None:
        """Add the job, or replace it only if its definition changed.

        An unchanged job keeps its stored next run time: replacing it would recompute
        that from now, and a run missed while the scheduler was down would be skipped
        instead of running within the misfire grace time.
        """
        s = self.schedule
        options = dict(max_instances=1, coalesce=s.coalesce,
                       misfire_grace_time=s.misfire_grace_seconds)
        old = self.scheduler.get_job(job_id)
        if old is not None and (str(old.trigger), getattr(old.trigger, "jitter", None),
                                list(old.args), old.max_instances, old.coalesce,
                                old.misfire_grace_time) == (
                str(trigger), getattr(trigger, "jitter", None), args, *options.values()):
            return
        self.scheduler.add_job(func, trigger, args=args, id=job_id, name=name,
                               replace_existing=True, **options)

    def again(self) -> StyleScheduler:
        """A new scheduler like this one (after ``shutdown``, which cannot be undone)."""
        config, asyncio, root, env = self._args
        fresh = StyleScheduler(self.url, config, asyncio=asyncio, root=root, env=env)
        fresh.retrainer.python = self.retrainer.python
        return fresh

    def jobs(self):
        return sorted(self.scheduler.get_jobs(), key=lambda j: j.id)

    def shutdown(self, wait: bool = True) -> None:
        global _context
        if self.scheduler.running:
            # APScheduler 3 processes due jobs once more after shutdown() marks it stopped:
            # a run that is due (say, missed while we were down) would be submitted to
            # the closed executor and its next run time advanced, i.e. lost. Pausing and
            # detaching the store first leaves the stored jobs exactly as they are.
            self.scheduler.pause()
            self.scheduler.remove_jobstore("default")
            self.scheduler.shutdown(wait=wait)
        _context = None
        if self.queue is not None:
            self.queue.close()
        self.engine.dispose()


def _list(sched: StyleScheduler) -> None:
    sched.start(paused=True)
    try:
        print(f"jobs in {describe(sched.url)}:")
        for job in sched.jobs():
            when = job.next_run_time.isoformat(timespec="seconds") if job.next_run_time \
                else "paused"
            print(f"{job.id:<28} next {when}  ({job.trigger})")
    finally:
        sched.shutdown(wait=False)


def _run_now(sched: StyleScheduler, style: str, minutes: float | None) -> int:
    sched.book.get(style)  # KeyError names the valid styles
    result = sched.retrainer.run(style, trigger="manual", minutes=minutes)
    print(result.message())
    return 1 if result.outcome == "failed" else 0


def _serve(sched: StyleScheduler, leader: Leadership | None = None) -> None:
    """Until SIGINT/SIGTERM: lead (run the jobs) when this process can, else wait."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    leader = leader or Leadership(sched.url, "scheduler")
    try:
        while not stop.is_set():
            if not leader.keep():
                if not stop.is_set():
                    log.info("another scheduler leads on %s; waiting to take over",
                             describe(sched.url))
                while not stop.wait(leader.every_s) and not leader.keep():
                    pass  # a follower runs nothing: no APScheduler, no jobs
                if stop.is_set():
                    break
            sched = _lead(sched, leader, stop)
    finally:
        log.info("stopping: ending a running training, if any")
        sched.retrainer.stop()  # its job then ends at once, so shutdown's wait is short
        sched.shutdown()
        leader.close()


def _lead(sched: StyleScheduler, leader: Leadership, stop: threading.Event
          ) -> StyleScheduler:
    """Run the jobs while this process leads; the scheduler to use next (a fresh one if
    the lead was lost, as a shut-down APScheduler cannot start again)."""
    sched.start()
    log.info("leading: scheduler running on %s with %d jobs", describe(sched.url),
             len(sched.jobs()))
    if sched.queue is not None:
        log.info("trainings are sent to %s", sched.queue.cfg.where())
    while not stop.wait(leader.every_s):
        if not (leader.keep() and leader.still_leading()):
            log.warning("no longer the leader: stopping the jobs and any training")
            sched.retrainer.stop()
            sched.shutdown()
            return sched.again()
    return sched


def main(argv: list[str] | None = None) -> int:
    from sqlalchemy.exc import DBAPIError

    from genmodels.cli import OneLineParser, fail
    from genmodels.styles import ConfigError
    from settings.logs import setup_logging
    from storage.errors import StorageError

    p = OneLineParser(prog="python -m training.scheduler", description=__doc__.split("\n")[0])
    p.add_argument("--list", action="store_true", help="print the jobs and exit")
    p.add_argument("--run-now", metavar="STYLE", help="retrain STYLE now and exit")
    p.add_argument("--minutes", type=float, help="budget for --run-now (default: config)")
    args = p.parse_args(argv)
    if args.minutes is not None and (args.run_now is None or not args.minutes > 0):
        return fail("--minutes needs --run-now and a positive number")
    try:  # $LOG_FORMAT=json: one JSON object a line
        setup_logging(logging.INFO, "%(asctime)s %(name)s: %(message)s")
    except ValueError as exc:
        return fail(str(exc))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        sched = StyleScheduler()
        if args.list:
            _list(sched)
            return 0
        if args.run_now:
            return _run_now(sched, args.run_now, args.minutes)
        _serve(sched)
        return 0
    except KeyError as exc:
        return fail(str(exc.args[0]))
    except (ConfigError, StorageError) as exc:
        return fail(str(exc))
    except DBAPIError as exc:  # unreachable, or not migrated (`python -m storage migrate`)
        reason = (str(exc.orig).strip().splitlines() or ["?"])[0]
        return fail(f"database {describe(database_url())}: {reason}")


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: APScheduler finds the
    # jobs by reference in ``training.scheduler``, whose ``_context`` main must set.
    from training.scheduler import main as imported_main
    sys.exit(imported_main())
