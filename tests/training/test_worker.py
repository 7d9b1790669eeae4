"""Training through the queue: the real RabbitMQ here, real worker processes, real kills.

The leading scheduler (``StyleScheduler`` with ``[queue]``) only queues and sends runs;
``training.worker`` processes (a driver around ``worker.serve``) train them. Their
training child is a stand-in shell script that records itself and then either runs the
real tiny training (``python -m training train ...``) or, for the style and attempts
the test names, hangs like a long training, so a worker can be killed mid-run at a
known moment. Each test uses its own queue name and deletes its queues afterwards.

    .venv/bin/python -m pytest tests/training/test_worker.py -q
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import settings
from storage.__main__ import upgrade
from storage.engine import make_engine, session_factory
from storage.models import TrainingRun
from storage.versions import active_model_version, list_model_versions
from tests.processes import driver_and_fake_python, gone, wait_until
from training import registry_ops, scheduler, tasks, worker
from training.scheduler import StyleScheduler

BROKER = os.environ.get("TEST_QUEUE_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
LEASE_S = 4.0
DRIVER = """\
import logging, sys
from pathlib import Path
import settings
from storage.engine import make_engine, session_factory
from training import tasks, worker
from training.retrain import Retrainer
from training.schedule_config import load_schedule
url, config, root, fake_python = sys.argv[1:5]
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
logging.getLogger("pika").setLevel(logging.WARNING)
book, schedule = load_schedule(Path(config))
cfg = tasks.configured(settings.load(Path(config)), schedule.heartbeat_seconds)
retrainer = Retrainer(session_factory(make_engine(url)), book, schedule, root=Path(root))
retrainer.python = fake_python  # records each child; hangs where the test says
worker.serve(retrainer, cfg)
"""
# argv: -m training COMMAND STYLE ...; one line per child: its pid, its worker, argv.
FAKE_PYTHON = """\
#!/bin/sh
echo "$$ $PPID $*" >> "$CHILD_LOG"
if [ "$3" = train ] && [ "$4" = "$HANG_STYLE" ]; then
  n=$(grep -c "training train $HANG_STYLE " "$CHILD_LOG")
  [ "$n" -le "$HANG_ATTEMPTS" ] && exec sleep 300
fi
exec "$REAL_PYTHON" "$@"
"""


def broker_or_skip() -> None:
    why = tasks.unreachable(tasks.QueueSettings(BROKER))
    if why is not None:
        pytest.skip(f"no RabbitMQ: {why}")


class Cluster:
    """One migrated SQLite database, a registry, a queue of its own and its workers."""

    def __init__(self, root: Path, make_bot, env_for, hang: str, hang_attempts: int):
        self.queue = f"test-training-{uuid.uuid4().hex[:10]}"
        extra = (f"\n[schedule]\npoll_seconds = 1\nheartbeat_seconds = 0.5\nminutes = 0.02\n"
                 f"[queue]\nname = \"{self.queue}\"\nlease_seconds = {LEASE_S}\n")
        self.bot = make_bot(root / "bot", edit=lambda toml: toml + extra)
        for style in ("tiny", "fable_owl", "fable_fox"):
            self.bot.save_artifact(style)
        self.url = f"sqlite:///{root / 'runs.db'}"
        upgrade(self.url)
        self.root, self.registry, self.log = root, root / "registry", root / "children.log"
        driver, fake = driver_and_fake_python(root, DRIVER, FAKE_PYTHON)
        self.cmd = [sys.executable, str(driver), self.url, str(self.bot.config),
                    str(self.registry), str(fake)]
        self.env = env_for(self.bot.config, QUEUE_URL=BROKER, CHILD_LOG=str(self.log),
                           HANG_STYLE=hang, HANG_ATTEMPTS=str(hang_attempts),
                           REAL_PYTHON=sys.executable, MODEL_REGISTRY=str(self.registry))
        self.engine = make_engine(self.url)
        self.sessions = session_factory(self.engine)
        self.workers: dict[str, subprocess.Popen] = {}
        self.sched: StyleScheduler | None = None

    def worker(self, name: str) -> subprocess.Popen:
        with open(self.root / f"worker-{name}.log", "w") as out:
            proc = subprocess.Popen(self.cmd, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.workers[name] = proc
        return proc

    def kill(self, pid: int) -> None:
        """kill -9 the worker with this pid: no cleanup code runs in it."""
        [proc] = [p for p in self.workers.values() if p.pid == pid]
        proc.kill()
        proc.wait()

    def name_of(self, pid: int) -> str:
        return next(name for name, p in self.workers.items() if p.pid == pid)

    def worker_log(self, name: str) -> str:
        return (self.root / f"worker-{name}.log").read_text()

    def consumers(self) -> int:
        import pika
        import pika.exceptions

        conn = pika.BlockingConnection(pika.URLParameters(BROKER))
        try:
            return conn.channel().queue_declare(self.queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:  # not declared by a worker yet
            return 0
        finally:
            if conn.is_open:
                conn.close()

    def start_workers(self, *names: str) -> None:
        for name in names:
            self.worker(name)
        live = sum(proc.poll() is None for proc in self.workers.values())
        wait_until(lambda: self.consumers() == live, 60, f"{live} workers consuming")

    def leader(self) -> StyleScheduler:
        self.sched = StyleScheduler(self.url, self.bot.config, root=self.registry)
        assert self.sched.queue is not None  # QUEUE_URL set by the fixture
        self.sched.start()
        return self.sched

    def nightly(self, style: str) -> None:
        """The style's cron job, now (in the scheduler's one job thread, as at night)."""
        assert self.sched is not None
        self.sched.scheduler.modify_job(scheduler.RETRAIN_PREFIX + style,
                                        next_run_time=dt.datetime.now(dt.UTC))

    def children(self, command: str | None = "train", style: str | None = None
                 ) -> list[tuple]:
        """(pid, worker pid) of each child started (of ``command``), oldest first."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [(int(p), int(pp)) for p, pp, _m, _t, cmd, st, *_ in map(str.split, lines)
                if command in (None, cmd) and style in (None, st)]

    def runs(self) -> dict[str, list[TrainingRun]]:
        with self.sessions.begin() as s:
            rows = s.query(TrainingRun).order_by(TrainingRun.id).all()
            s.expunge_all()
        out: dict[str, list[TrainingRun]] = {}
        for row in rows:
            out.setdefault(row.style, []).append(row)
        return out

    def run(self, style: str) -> TrainingRun:
        [row] = self.runs()[style]  # never a second row for one style
        return row

    def versions(self, style: str) -> tuple[str | None, list[str]]:
        """The active version in the database and every registered one."""
        with self.sessions.begin() as s:
            active = active_model_version(s, style)
            return (active.version if active else None,
                    [v.version for v in list_model_versions(s, style)])

    def close(self) -> None:
        import pika

        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid, _ in self.children(None):  # none should be left; never leave a sleeper
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        if self.sched is not None:
            self.sched.shutdown(wait=False)
        self.engine.dispose()
        conn = pika.BlockingConnection(pika.URLParameters(BROKER))
        for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
            conn.channel().queue_delete(name)
        conn.close()


@pytest.fixture
def cluster(tmp_path, make_bot, env_for, monkeypatch, request):
    broker_or_skip()
    monkeypatch.setenv("QUEUE_URL", BROKER)
    hang, attempts = request.param
    c = Cluster(tmp_path, make_bot, env_for, hang, attempts)
    yield c
    c.close()


@pytest.mark.parametrize("cluster", [("tiny", 1)], indirect=True)
def test_two_workers_fan_out_a_killed_run_is_retried_once_and_a_variant_waits(cluster):
    """tiny (its first attempt hangs) and fable_owl go to the two workers; fable_fox, a
    variant of tiny, waits; tiny's run is sent a second time; the worker training tiny
    is killed with -9; the other one finishes fable_owl, takes tiny over once its lease
    expired (once, for both messages), then trains fable_fox."""
    c = cluster
    c.start_workers("a", "b")
    c.leader()
    for style in ("tiny", "fable_owl", "fable_fox"):
        c.nightly(style)
    [(hung, holder)] = wait_until(lambda: c.children(style="tiny"), 60, "tiny's child")
    [(_, owl_worker)] = wait_until(lambda: c.children(style="fable_owl"), 60, "owl's child")
    assert {holder, owl_worker} == {p.pid for p in c.workers.values()}  # one each
    served, registered = c.versions("tiny")  # the shipped model, registered by attempt 1
    # fox's cron job runs in the scheduler's job thread: on a busy machine after tiny's
    # and owl's children have started.
    wait_until(lambda: "fable_fox" in c.runs(), 60, "fox's queued run")
    fox = c.run("fable_fox")
    assert fox.status == "queued" and fox.metrics is None  # not sent while tiny runs
    assert c.sched is not None and c.sched.queue is not None
    c.sched.queue.send(c.run("tiny").id)  # a duplicate message (say, from a new leader)

    c.kill(holder)
    wait_until(lambda: gone(hung), 10, "the training child dying with its worker")
    assert c.run("tiny").status == "running"  # until its lease runs out
    assert c.versions("tiny") == (served, registered)  # the killed attempt published nothing

    wait_until(lambda: c.run("fable_fox").status in ("succeeded", "failed"), 150,
               "the variant trained after its parent")
    runs = {style: c.run(style) for style in ("tiny", "fable_owl", "fable_fox")}
    assert {s: r.status for s, r in runs.items()} == dict.fromkeys(runs, "succeeded"), \
        {s: r.error for s, r in runs.items()}
    # Exactly two tiny trainings: the killed one and the retry, on the other worker.
    assert [w for _, w in c.children(style="tiny")] == [holder, owl_worker]
    assert "attempt 2 of 2" in c.worker_log(c.name_of(owl_worker))
    # The variant was claimed only after its parent's run finished.
    assert runs["fable_fox"].started_at >= runs["tiny"].finished_at
    active, _ = c.versions("tiny")
    assert active in (served, runs["tiny"].model_version)


@pytest.mark.parametrize("cluster", [("tiny", 2)], indirect=True)
def test_a_run_whose_worker_dies_twice_is_failed_never_trained_a_third_time(cluster):
    """/retrain queues tiny; both attempts hang and their workers are killed; a third
    worker gets the message back and fails the run instead of training it again."""
    c = cluster
    c.start_workers("a", "b")
    c.leader()
    with c.sessions.begin() as s:
        registry_ops.queue_retrain(s, "tiny")  # what /retrain does
    [(first, holder)] = wait_until(lambda: c.children(style="tiny"), 60, "attempt 1")
    served = c.versions("tiny")
    with c.sessions.begin() as s:  # the guard a redelivered message meets
        assert worker.claim(s, c.run("tiny").id, LEASE_S, 2).action == "wait"
    c.kill(holder)
    wait_until(lambda: gone(first), 10, "attempt 1's child dying with its worker")
    _, (second, holder2) = wait_until(lambda: c.children(style="tiny")[1:] and
                                      c.children(style="tiny"), 60, "attempt 2")
    assert holder2 != holder and c.run("tiny").status == "running"
    c.kill(holder2)
    wait_until(lambda: gone(second), 10, "attempt 2's child dying with its worker")

    c.start_workers("c")  # the one live worker gets the message back
    run = wait_until(lambda: (r := c.run("tiny")).status == "failed" and r, 60,
                     "the run failed after its second attempt")
    assert "2 attempts made" in run.error, run.error
    assert len(c.children(style="tiny")) == 2  # never a third training
    assert "not trained" in c.worker_log("c")
    assert c.versions("tiny") == served


def test_dispatch_sends_each_queued_run_once_and_a_variant_after_its_parent(make_bot,
                                                                            tmp_path):
    """No broker needed: ``send`` is a list; the order rule and the once-only mark."""
    bot = make_bot(tmp_path / "bot")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions, book, sent = session_factory(engine), bot.book(), []
    with sessions.begin() as s:
        ids = {style: tasks.queue_run(s, style, trigger="schedule", minutes=1)[0].id
               for style in ("fable_fox", "tiny", "fable_owl")}
        assert not tasks.queue_run(s, "tiny", trigger="schedule", minutes=1)[1]
    assert tasks.dispatch(sessions, book, sent.append) == [ids["tiny"], ids["fable_owl"]]
    assert tasks.dispatch(sessions, book, sent.append) == []  # marked: never twice
    with sessions.begin() as s:
        s.get(TrainingRun, ids["tiny"]).status = "succeeded"
    assert tasks.dispatch(sessions, book, sent.append) == [ids["fable_fox"]]
    assert sent == [ids["tiny"], ids["fable_owl"], ids["fable_fox"]]
    assert tasks.ancestors(book, "fable_fox") == ["tiny"]
    engine.dispose()


@pytest.mark.parametrize(("toml", "env", "message"), [
    ('url = "amqp://guest:guest@127.0.0.1/%2F"', {}, "queue.url: no password in config"),
    ('url = "redis://127.0.0.1:6379/0"', {}, "queue.url: expected amqp://"),
    ('url = "amqp://h/"\nlease_seconds = 1', {}, "queue.lease_seconds: between 3 x"),
    ('url = "amqp://h/"\nlease_seconds = 61', {}, "queue.lease_seconds: between"),
    ('url = "amqp://h/"\nname = "a b"', {}, "queue.name: letters"),
    ('', {"QUEUE_URL": "http://h/"}, "QUEUE_URL: expected amqp://"),
])
def test_bad_queue_settings_name_the_key(toml, env, message):
    config = settings.decode({"queue": __import__("tomllib").loads(toml)})
    with pytest.raises(settings.ConfigError, match=message.replace(".", r"\.")):
        tasks.configured(config, 5.0, env)


def test_queue_settings_from_config_and_environment():
    none = settings.decode({})
    assert tasks.configured(none, 5.0, {}) is None  # the default: no broker
    cfg = settings.decode({"queue": {"url": "amqp://bot@mq:5673/prod", "lease_seconds": 30}})
    got = tasks.configured(cfg, 5.0, {"QUEUE_PASSWORD": "s/cret"})
    assert got == tasks.QueueSettings("amqp://bot:s%2Fcret@mq:5673/prod",
                                      "stylebot-training", 30.0, 2)
    assert got.where() == "amqp://mq:5673/prod queue stylebot-training"  # no secret
    env = tasks.configured(none, 5.0, {"QUEUE_URL": "amqps://u:p@elsewhere/"})
    assert env is not None and env.url == "amqps://u:p@elsewhere/"


def test_the_worker_without_a_broker_exits_with_one_line(run_cli, make_bot, tmp_path):
    bot = make_bot(tmp_path / "bot")
    proc = run_cli("training.worker", [], config=bot.config, QUEUE_URL="")
    assert proc.returncode == 2
    assert "no broker: set [queue] url" in proc.stderr and len(proc.stderr.splitlines()) == 1
