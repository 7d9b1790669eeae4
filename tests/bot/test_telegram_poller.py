"""One Telegram poller per bot and database: a second ``python -m bot telegram`` in
polling mode exits with status 2 and one line naming the way out (webhook replicas);
after the first is killed with SIGKILL, a new one polls at once (no lease to wait out).

Real processes against the fake Bot API, on SQLite and on the local PostgreSQL.

    .venv/bin/python -m pytest -q tests/bot/test_telegram_poller.py
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest
from fake_telegram import FakeTelegram
from test_telegram_process import World, stop

from storage.__main__ import upgrade
from storage.leadership import Leadership, dead_here
from tests.databases import pg_schema_url


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, make_bot, env_for, tmp_path):
    world = World(make_bot, env_for, tmp_path)
    if request.param == "sqlite":
        yield world
        return
    world.url, drop = pg_schema_url()
    upgrade(world.url)
    yield world
    drop()


def test_a_second_poller_is_refused_and_a_killed_ones_successor_polls(world):
    async def scenario():
        server = await FakeTelegram().start()
        try:
            first = await world.start(world.env(server), "first.log")
            await server.wait_for("setMyCommands", timeout=120)
            second = await world.start(world.env(server), "second.log")
            status = await asyncio.wait_for(second.wait(), 120)
            server.message(1, 1, "/tiny the cat")  # the first still answers
            await server.wait_for("sendMessage", lambda p: p["chat_id"] == 1, timeout=60)
            first.kill()  # SIGKILL: no clean release of the lock
            await first.wait()
            third = await world.start(world.env(server), "third.log")
            await server.wait_for("setMyCommands", count=2, timeout=120)
            server.message(2, 2, "/tiny the dog")
            await server.wait_for("sendMessage", lambda p: p["chat_id"] == 2, timeout=60)
            assert await stop(third) == 0
            return status
        finally:
            await world.kill_all()
            await server.stop()

    status = asyncio.run(scenario())
    err = (world.tmp / "second.log").read_text(encoding="utf-8", errors="replace")
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("bot: telegram: another process is polling Telegram for "
                               "this bot"), lines[0]
    assert 'mode = "webhook"' in lines[0]



def test_a_lease_of_a_dead_process_of_this_host_is_taken_at_once(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone, host = child.pid, socket.gethostname()
    assert dead_here(f"{host}:{gone}:abc")
    assert not dead_here(f"{host}:{os.getpid()}:abc")
    assert not dead_here(f"elsewhere.example:{gone}:abc")  # only its lease's expiry tells
    url = f"sqlite:///{tmp_path / 'lead.db'}"
    upgrade(url)
    dead = Leadership(url, "telegram-poller:1")
    dead.holder = f"{host}:{gone}:abc"  # a lease row as a killed poller leaves it
    patient = Leadership(url, "telegram-poller:1")
    eager = Leadership(url, "telegram-poller:1", reclaim_dead=True)
    try:
        assert dead.keep()
        assert not patient.keep()  # without reclaim_dead: waits for the lease's expiry
        assert eager.keep() and eager.error is None
    finally:
        for leader in (patient, eager):
            leader.close()
        dead.engine.dispose()
