"""Training runs through a task queue: Dramatiq over RabbitMQ, when a broker is named.

    cfg = tasks.configured(settings.load(), heartbeat_s=5)  # None: the scheduler trains
    queue = tasks.TrainingQueue(cfg)                         # the broker and the actor
    with sessions.begin() as s:
        tasks.queue_run(s, "austen", trigger="schedule", minutes=5)  # a queued row
    tasks.dispatch(sessions, book, queue.send)   # queued rows whose parents are done

The database stays the truth about runs. A ``training_runs`` row is queued first (the
nightly job here, ``/retrain`` through ``registry_ops.queue_retrain``); the leading
scheduler's poll sends one message per queued run whose parent style (``training.
parent``, up to the base) has no unfinished run, so a variant is sent only after the
style it fine-tunes from finished, and marks the row sent (``metrics.enqueued_at``) in
the same transaction. A message carries only the run id: a worker (training/worker.py)
takes the run through a conditional UPDATE of its row, so a message delivered twice, or
sent again by a new leader, never trains twice.

Dramatiq, not Celery: it acknowledges a message only after the actor returns (a worker
killed mid-run leaves it unacknowledged, and RabbitMQ hands it to another worker), its
retries with a delay are one exception (``dramatiq.Retry``), and a worker is a plain
object we start in our own process, with one thread and a prefetch of one. RabbitMQ,
not Redis: it redelivers the moment the dead worker's connection drops, and its queues
are durable, so a broker restart loses no queued run.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from genmodels.styles import StyleBook
from settings import ConfigError, schema
from storage.models import RunStatus, RunTrigger, TrainingRun, utcnow
from training.registry_ops import LEASE_SECONDS, UNFINISHED

log = logging.getLogger(__name__)
ACTOR = "train_run"
QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")  # what Dramatiq accepts
# Retries of a message whose run another live worker holds: it waits for that run to
# end or its lease to expire (a week of waits at the default lease; never endless).
MAX_WAITS = 10_000
MAX_ERRORS = 3  # retries after an unexpected error (the database briefly unreachable)


@dataclass(frozen=True)
class QueueSettings:
    """``[queue]`` with the environment applied; only built when a broker is named."""

    url: str
    name: str = "stylebot-training"
    lease_seconds: float = LEASE_SECONDS
    attempts: int = 2

    def where(self) -> str:
        """The broker and queue for logs: the URL without user or password."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path} " \
               f"queue {self.name}"


def configured(config: schema.Config, heartbeat_s: float,
               env: Mapping[str, str] | None = None) -> QueueSettings | None:
    """The queue settings, or None when no broker is named (one machine, no setup).

    ``QUEUE_URL`` wins over ``[queue] url``; a password must come from the environment
    (``QUEUE_URL``, or ``QUEUE_PASSWORD`` added to the config's URL), never config.toml.
    """
    env = os.environ if env is None else env
    table = config.queue
    url = env.get("QUEUE_URL") or table.url
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    where = "QUEUE_URL" if env.get("QUEUE_URL") else "queue.url"
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(f"{where}: expected amqp://HOST[:PORT]/VHOST (RabbitMQ), "
                          f"got {parts.scheme or url[:20]!r}")
    if where == "queue.url" and parts.password is not None:
        raise ConfigError("queue.url: no password in config.toml; set QUEUE_URL or "
                          "QUEUE_PASSWORD in the environment")
    if where == "queue.url" and env.get("QUEUE_PASSWORD"):
        user = urllib.parse.quote(parts.username or "guest", safe="")
        secret = urllib.parse.quote(env["QUEUE_PASSWORD"], safe="")
        host = parts.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{secret}@{host}"))
    if not QUEUE_NAME.match(table.name):
        raise ConfigError(f"queue.name: letters, digits, '.', '_' or '-', got {table.name!r}")
    if not 3 * heartbeat_s <= table.lease_seconds <= LEASE_SECONDS:
        # A late heartbeat is no death; past the lease everyone else uses, /retrain
        # would fail the run before a worker could take it over.
        raise ConfigError(f"queue.lease_seconds: between 3 x schedule.heartbeat_seconds "
                          f"({3 * heartbeat_s:g}) and {LEASE_SECONDS:g}, "
                          f"got {table.lease_seconds:g}")
    return QueueSettings(url, table.name, table.lease_seconds, table.attempts)


def unreachable(cfg: QueueSettings) -> str | None:
    """Why the broker cannot be reached, or None (a worker says so before it waits)."""
    import pika  # type: ignore[import-untyped]
    import pika.exceptions  # type: ignore[import-untyped]

    try:
        pika.BlockingConnection(pika.URLParameters(cfg.url)).close()
    except pika.exceptions.AMQPError as exc:
        return f"broker {cfg.where()}: {type(exc).__name__} {str(exc)[:200]}".strip()
    return None


def _retry_when(retries: int, exc: BaseException) -> bool:
    import dramatiq

    return retries < (MAX_WAITS if isinstance(exc, dramatiq.Retry) else MAX_ERRORS)


def _no_handler(run_id: int) -> None:  # the scheduler only sends
    raise RuntimeError(f"run {run_id}: this process sends runs, it does not train them")


class TrainingQueue:
    """The broker and the one actor: ``send(run_id)`` here, ``handler(run_id)`` in a worker."""

    def __init__(self, cfg: QueueSettings, handler: Callable[[int], None] | None = None):
        import dramatiq
        from dramatiq.brokers.rabbitmq import RabbitmqBroker
        from dramatiq.middleware import (
            AgeLimit,
            Callbacks,
            Pipelines,
            Retries,
            ShutdownNotifications,
        )

        self.cfg = cfg
        # Dramatiq's defaults without TimeLimit: it would raise into a training after
        # 10 minutes, and the Retrainer already bounds each child by its budget.
        middleware = [AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(),
                      Retries(min_backoff=1000, max_backoff=60_000)]
        # Publisher confirms: send() returns once RabbitMQ has the message.
        self.broker = RabbitmqBroker(url=cfg.url, confirm_delivery=True,
                                     middleware=middleware)
        declare = dramatiq.actor(broker=self.broker, actor_name=ACTOR,
                                 queue_name=cfg.name, retry_when=_retry_when)
        self.actor = declare(handler or _no_handler)

    def send(self, run_id: int) -> None:
        self.actor.send(run_id)

    def close(self) -> None:
        self.broker.close()


def queue_run(session: Session, style: str, *, trigger: str, minutes: float | None
              ) -> tuple[TrainingRun, bool]:
    """Queue a run of ``style`` (the nightly job with a broker); (its row, new?).

    A style with a run queued or running is not queued twice: that row comes back.
    """
    pending = session.execute(select(TrainingRun).where(
        TrainingRun.style == style, TrainingRun.status.in_(UNFINISHED))
        .order_by(TrainingRun.id).limit(1)).scalar_one_or_none()
    if pending is not None:
        return pending, False
    run = TrainingRun(style=style, trigger=RunTrigger(trigger).value,
                      status=RunStatus.QUEUED.value, budget_minutes=minutes,
                      started_at=utcnow())
    session.add(run)
    session.flush()
    return run, True


def ancestors(book: StyleBook, style: str) -> list[str]:
    """The styles ``style`` fine-tunes from, nearest first (a variant's style, its base)."""
    out: list[str] = []
    name = style
    while True:
        try:
            parent = book.get(name).training.parent
        except KeyError:  # an unknown style: its run fails in the worker
            return out
        if not parent or parent in out or parent == style:
            return out
        out.append(parent)
        name = parent


def dispatch(sessions: sessionmaker[Session], book: StyleBook,
             send: Callable[[int], None]) -> list[int]:
    """Send every queued, unsent run whose ancestors have no unfinished run; their ids.

    Each row is marked sent in the transaction that sends it: if the broker refuses,
    the row stays unsent and the next poll tries again; if the commit fails after the
    send, the run is sent twice, which the worker's claim makes harmless.
    """
    sent = []
    with sessions.begin() as s:
        unfinished = list(s.execute(select(TrainingRun).where(
            TrainingRun.status.in_(UNFINISHED)).order_by(TrainingRun.id)).scalars())
    busy = {run.style for run in unfinished}
    for run in unfinished:
        if run.status != RunStatus.QUEUED.value or (run.metrics or {}).get("enqueued_at"):
            continue
        waiting_for = [p for p in ancestors(book, run.style) if p in busy]
        if waiting_for:
            log.debug("run %d (%s) waits for %s", run.id, run.style, waiting_for[0])
            continue
        with sessions.begin() as s:
            row = s.get(TrainingRun, run.id)
            if row is None or row.status != RunStatus.QUEUED.value or row.metrics:
                continue  # taken or sent meanwhile
            row.metrics = {"enqueued_at": utcnow().isoformat(timespec="seconds")}
            s.flush()
            send(run.id)
        sent.append(run.id)
        log.info("run %d (%s) sent to the training queue", run.id, run.style)
    return sent


def age_s(row: TrainingRun, now: dt.datetime | None = None) -> float:
    """Seconds since the run's last heartbeat (or its start, before the first one)."""
    last = row.heartbeat_at or row.started_at
    return ((now or utcnow()) - last).total_seconds()
