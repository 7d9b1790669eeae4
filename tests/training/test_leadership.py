"""Scheduler leadership on the real databases: SQLite and the local PostgreSQL.

Two ``Leadership`` claims on one database: one leads, the other does not; the other
takes over when the leader steps down or its process is killed (``kill -9``). Then two
real scheduler processes (``training.scheduler._serve``): only the leader starts the
queued training; killing it hands the lead to the other, which starts the next one and
leaves the dead leader's run alone (its own heartbeat lease decides, not a new leader).
A leader whose lead is taken away (its lock's connection ended on PostgreSQL, another
holder's lease on SQLite) stops its training and leads again with a fresh scheduler.
Waits poll with generous limits; nothing asserts how fast.

    .venv/bin/python -m pytest tests/training/test_leadership.py -q
"""
from __future__ import annotations

import datetime as dt
import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text, update

from storage.engine import make_engine, session_factory
from storage.leadership import Leadership
from storage.models import LeaderLease, TrainingRun, utcnow
from tests.databases import BACKENDS, migrated
from tests.processes import SCHEDULER_DRIVER, driver_and_fake_python, wait_until
from training.registry_ops import queue_retrain

HOLDER = """\
import sys, time
from storage.leadership import Leadership
leader = Leadership(sys.argv[1], "scheduler", lease_s=2.0, every_s=0.2)
while not leader.keep():
    time.sleep(0.1)
print("leading", flush=True)
time.sleep(300)
"""
DRIVER = """\
import logging
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
""" + SCHEDULER_DRIVER
FAKE_PYTHON = """\
#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --out ] && mkdir -p "$2"; shift; done  # as training does
echo $PPID >> "$CHILD_PARENTS"
exec sleep 300
"""
SCHEDULE = "\n[schedule]\npoll_seconds = 1\nheartbeat_seconds = 0.5\n"


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    yield from migrated(request.param, tmp_path, "lead")


def claim(url: str) -> Leadership:
    return Leadership(url, "scheduler", lease_s=2.0, every_s=0.2)


def test_one_leads_and_the_other_takes_over_when_it_steps_down(url):
    first, second = claim(url), claim(url)
    try:
        assert first.keep() and not second.keep()
        assert first.keep() and not second.keep()  # renewing keeps it
        assert Leadership(url, "other-role").keep()  # roles do not exclude each other
        first.close()
        wait_until(second.keep, 60, "the second claim leading after the first closed")
        assert not claim(url).keep()
    finally:
        first.close()
        second.close()


def test_a_killed_leader_is_replaced(url, env_for, tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen([sys.executable, str(script), url], env=env_for(),
                              stdout=subprocess.PIPE, text=True)
    waiting = claim(url)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "leading\n"
        assert not waiting.keep()
        holder.kill()  # kill -9: no chance to step down
        holder.wait()
        wait_until(waiting.keep, 60, "the lead taken over from a killed holder")
    finally:
        holder.kill()
        holder.wait()
        waiting.close()


class Pair:
    """Two scheduler processes on one database, with a stand-in training child."""

    def __init__(self, root: Path, url: str, make_bot, env_for):
        self.bot = make_bot(root / "bot", edit=lambda toml: toml + SCHEDULE)
        for style in ("tiny", "fable_owl"):
            self.bot.save_artifact(style)
        self.url, self.root, self.parents = url, root, root / "child.parents"
        driver, fake = driver_and_fake_python(root, DRIVER, FAKE_PYTHON)
        self.cmd = [sys.executable, str(driver), url, str(self.bot.config),
                    str(root / "registry"), str(fake)]
        self.env = env_for(self.bot.config, CHILD_PARENTS=str(self.parents))
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        with open(self.root / f"{name}.log", "w") as out:
            proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=out)
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        name = "a" if proc is self.procs[0] else "b"
        return (self.root / f"{name}.log").read_text()

    def child_parents(self) -> list[int]:
        return ([int(x) for x in self.parents.read_text().split()]
                if self.parents.exists() else [])

    def queue(self, style: str) -> int:
        with self.sessions.begin() as s:
            return queue_retrain(s, style)[0].id

    def status(self, run_id: int) -> str:
        with self.sessions.begin() as s:
            return s.get(TrainingRun, run_id).status

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.engine.dispose()


@pytest.fixture
def pair(tmp_path, url, make_bot, env_for):
    p = Pair(tmp_path, url, make_bot, env_for)
    yield p
    p.close()


def test_only_the_leader_trains_and_the_follower_takes_over(pair):
    a = pair.start("a")
    wait_until(lambda: "leading:" in pair.log(a), 60, "the first scheduler leading")
    b = pair.start("b")
    wait_until(lambda: "another scheduler leads" in pair.log(b), 60, "the second waiting")
    first = pair.queue("tiny")
    assert wait_until(pair.child_parents, 60, "the leader starting a training") == [a.pid]
    time.sleep(1.5)  # several polls of both: the follower claims nothing
    assert pair.child_parents() == [a.pid] and "leading:" not in pair.log(b)

    a.kill()  # kill -9 the leader: its training child dies with it
    a.wait()
    wait_until(lambda: "leading:" in pair.log(b), 60, "the follower taking over")
    second = pair.queue("fable_owl")
    wait_until(lambda: pair.child_parents() == [a.pid, b.pid], 60, "the new leader training")
    assert pair.status(second) == "running"
    # The dead leader's run keeps its heartbeat lease (60 s) and is not failed because
    # another scheduler took over; its lease, not a new leader, decides.
    assert pair.status(first) == "running", pair.log(b)[-2000:]


def take_the_lead_away(pair: Pair) -> None:
    """What a leader sees when its lead is gone: on PostgreSQL its lock's connection
    ends (a server restart, a network cut), on SQLite another holder's lease."""
    with pair.engine.begin() as conn:
        if pair.engine.dialect.name == "sqlite":
            conn.execute(update(LeaderLease).values(
                holder="intruder", expires_at=utcnow() + dt.timedelta(seconds=3)))
            return
        db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        key = int.from_bytes(hashlib.sha256(f"stylebot:scheduler:{db}:{schema}".encode())
                             .digest()[:8], "big")  # as pg_locks shows it: two oids
        ended = conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = :hi AND objid = :lo AND objsubid = 1"),
            {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalars().all()
        assert ended == [True]


def test_a_leader_that_loses_the_lead_stops_training_and_leads_again(pair):
    a = pair.start("a")
    wait_until(lambda: "leading:" in pair.log(a), 60, "the scheduler leading")
    run = pair.queue("tiny")
    wait_until(pair.child_parents, 60, "the leader starting a training")
    take_the_lead_away(pair)
    wait_until(lambda: "no longer the leader" in pair.log(a), 60, "the leader stepping down")
    wait_until(lambda: pair.status(run) == "failed", 60, "its training stopped and failed")
    # Nobody else leads: a fresh scheduler in the same process takes the lead again.
    wait_until(lambda: pair.log(a).count("leading:") == 2, 60, "the lead taken again")
    second = pair.queue("tiny")
    wait_until(lambda: pair.child_parents() == [a.pid, a.pid], 60, "training again")
    assert pair.status(second) == "running"


def test_the_procfile_command_runs_its_jobs(tmp_path, make_bot, env_for):
    """``python -m training.scheduler`` as the Procfile starts it: the module runs as
    ``__main__`` while APScheduler finds the jobs in ``training.scheduler``; the jobs
    must see the scheduler that ``main`` started (a queued /retrain gets claimed)."""
    url = next(migrated("sqlite", tmp_path, "procfile"))
    pair = Pair(tmp_path, url, make_bot, env_for)
    pair.cmd = [sys.executable, "-m", "training.scheduler"]
    pair.env |= {"DATABASE_URL": url, "MODEL_REGISTRY": str(tmp_path / "registry")}
    try:
        proc = pair.start("a")
        wait_until(lambda: "leading:" in pair.log(proc), 60, "the scheduler leading")
        run = pair.queue("tiny")
        wait_until(lambda: pair.status(run) != "queued", 60, "the queued run claimed")
        assert "no StyleScheduler is running" not in pair.log(proc)
    finally:
        pair.close()
