"""Training notices claimed once: two bot replicas' watchers race on one database.

Two ``bot.notices.RunWatcher`` instances, each with its own engine (as two bot
processes would have), poll in two threads while runs finish; every finished run's
notice must come out of exactly one of them. On SQLite and the local PostgreSQL.

    .venv/bin/python -m pytest tests/training/test_notices_claim.py -q
"""
from __future__ import annotations

import threading
import time

import pytest

from bot.notices import RunWatcher
from storage.engine import make_engine, session_factory
from storage.versions import finish_training_run, start_training_run
from tests.databases import BACKENDS, migrated

RUNS = 40


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    yield from migrated(request.param, tmp_path, "notices")


def finish_run(sessions, style: str) -> None:
    with sessions.begin() as s:
        run_id = start_training_run(s, style=style, trigger="schedule").id
    with sessions.begin() as s:
        finish_training_run(s, run_id, status="failed", error="killed (timeout)")


def test_two_replicas_send_each_notice_exactly_once(url):
    engines = [make_engine(url) for _ in range(3)]
    writer, *replicas = [session_factory(e) for e in engines]
    finish_run(writer, "old")  # finished before the replicas started: old news
    watchers = [RunWatcher() for _ in replicas]
    for watcher, sessions in zip(watchers, replicas, strict=True):
        with sessions.begin() as s:
            watcher.start(s)
    heard: list[list[str]] = [[], []]
    done = threading.Event()

    def replica(i: int) -> None:
        while True:
            last = done.is_set()  # one more poll after the writer finished
            with replicas[i].begin() as s:
                heard[i].extend(watchers[i].poll(s))
            if last:
                return
            time.sleep(0.001)

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for n in range(RUNS):
            finish_run(writer, f"style{n}")
    finally:
        done.set()
        for t in threads:
            t.join(120)
        for e in engines:
            e.dispose()
    sent = heard[0] + heard[1]
    assert sorted(sent) == sorted(f"retrain style{n} failed: killed (timeout)"
                                  for n in range(RUNS)), sent
    print(f"replica 0 sent {len(heard[0])}, replica 1 sent {len(heard[1])}")
