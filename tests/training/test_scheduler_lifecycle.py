"""The scheduler process dying or being stopped mid-run, with real processes.

A real ``python -m training.scheduler`` loop (``training.scheduler._serve``) in a child
process, on a migrated SQLite file, claims a /retrain the real chat core queued. Its
training child is a stand-in that records its pid and sleeps (TensorFlow is not what is
tested): ``kill -9`` of the scheduler must take the child along, the run must be
failed once its lease (heartbeat) expires so /retrain works again, the next scheduler
must remove the dead run's scratch folder, and SIGTERM must end child and scheduler
within seconds.

    .venv/bin/python -m pytest tests/training/test_scheduler_lifecycle.py -q
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.core import Core, Request
from bot.settings import BotSettings
from serving.engine import Engine, EngineClient
from storage.__main__ import upgrade
from storage.database import Database
from storage.engine import make_engine, session_factory
from storage.models import TrainingRun
from tests.processes import SCHEDULER_DRIVER, driver_and_fake_python, gone, wait_until
from training import registry_ops
from training.scheduler import StyleScheduler

FAKE_PYTHON = """\
#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --out ] && mkdir -p "$2"; shift; done  # as training does
echo $$ >> "$CHILD_PIDS"
exec sleep 300
"""
SCHEDULE = "\n[schedule]\npoll_seconds = 1\nheartbeat_seconds = 0.5\n"


class World:
    def __init__(self, root: Path, make_bot, env_for):
        self.bot = make_bot(root / "bot", edit=lambda toml: toml + SCHEDULE)
        self.bot.save_artifact("tiny")
        self.url = f"sqlite:///{root / 'sched.db'}"
        upgrade(self.url)
        self.registry, self.pids = root / "registry", root / "child.pids"
        driver, fake = driver_and_fake_python(root, SCHEDULER_DRIVER, FAKE_PYTHON)
        self.cmd = [sys.executable, str(driver), self.url, str(self.bot.config),
                    str(self.registry), str(fake)]
        self.env = env_for(self.bot.config, CHILD_PIDS=str(self.pids))
        self.engine = make_engine(self.url)
        self.sessions = session_factory(self.engine)
        book = self.bot.book()
        client = EngineClient(Engine(paths={n: s.model_dir for n, s in book.styles.items()},
                                     backend="numpy", poll_s=3600))
        self.core = Core(book, Database(self.url, spool=None), client,
                         BotSettings(admins={"console": frozenset({"local"})}))

    def scheduler(self) -> subprocess.Popen:
        return subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    async def retrain(self) -> str:
        request = Request("console", "local", "local", text="/retrain tiny")
        return (await self.core.handle(request)).text

    def run_row(self, run_id: int) -> TrainingRun:
        with self.sessions.begin() as s:
            return s.get(TrainingRun, run_id)

    def child_pids(self) -> list[int]:
        return [int(x) for x in self.pids.read_text().split()] if self.pids.exists() else []


@pytest.fixture
def world(tmp_path, make_bot, env_for):
    w = World(tmp_path, make_bot, env_for)
    yield w
    for pid in w.child_pids():  # should all be gone; never leave a sleeper behind
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
    asyncio.run(w.core.close())
    w.engine.dispose()


def queued_run(text: str) -> int:
    assert "queued (run " in text, text
    return int(text.split("(run ")[1].split(")")[0])


def another_scheduler_leaves_it_alone(world, run_id: int, work: Path) -> None:
    """A scheduler starting (and looking) beside a live one fails none of its runs."""
    other = StyleScheduler(world.url, world.bot.config, root=world.registry)
    other.start()
    other.shutdown()
    time.sleep(1.5)  # longer than a heartbeat interval
    assert world.run_row(run_id).status == "running" and work.is_dir()
    assert "already queued or running" in asyncio.run(world.retrain())


def test_kill_9_takes_the_child_along_and_the_lease_frees_retrain(world, monkeypatch):
    monkeypatch.setattr(registry_ops, "LEASE_SECONDS", 3.0)  # the bot's look (this process)
    run_id = queued_run(asyncio.run(world.retrain()))
    first = world.scheduler()
    try:
        [child] = wait_until(world.child_pids, 60, "the scheduler starting its child")
        assert world.run_row(run_id).status == "running"
        work = world.registry / "tiny" / f".work-{run_id}"
        assert work.is_dir()
        another_scheduler_leaves_it_alone(world, run_id, work)
        first.kill()  # kill -9: no cleanup code runs in the scheduler
        first.wait()
        killed = time.monotonic()
        wait_until(lambda: gone(child), 5, "the training child dying with its scheduler")
        print(f"child gone {time.monotonic() - killed:.2f} s after kill -9")
    finally:
        first.kill()
        first.wait()
    # The run expires with its lease (3 s here), then /retrain queues a new one.
    new_id = queued_run(wait_until(lambda: "queued (run" in (t := asyncio.run(
        world.retrain())) and t, 10, "/retrain working again"))
    freed = time.monotonic() - killed
    old = world.run_row(run_id)
    assert old.status == "failed" and "stopped beating for over 3 s" in old.error
    assert 2.0 < freed < 10, freed
    assert work.is_dir()  # kill -9 left the scratch folder

    second = world.scheduler()  # the next scheduler removes it
    try:
        wait_until(lambda: not work.exists(), 30, "the dead run's folder removed at start")
        wait_until(lambda: len(world.child_pids()) == 2, 30, "the new run's child")
        assert world.run_row(new_id).status == "running"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)


def test_sigterm_stops_the_child_and_exits_within_seconds(world):
    run_id = queued_run(asyncio.run(world.retrain()))
    sched = world.scheduler()
    try:
        [child] = wait_until(world.child_pids, 60, "the scheduler starting its child")
        start = time.monotonic()
        sched.send_signal(signal.SIGTERM)
        status = sched.wait(10)
        took = time.monotonic() - start
    finally:
        sched.kill()
        sched.wait()
    print(f"scheduler exited {took:.2f} s after SIGTERM")
    assert status == 0 and took < 10, (status, took, sched.stderr.read()[-2000:])
    assert gone(child)
    run = world.run_row(run_id)
    assert run.status == "failed", run.error
    assert "its scheduler or worker was asked to stop" in run.error, run.error
    assert not list((world.registry / "tiny").glob(".work-*"))
