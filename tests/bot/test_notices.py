"""Admin notices: a training run that finishes while the bot runs is announced once.

Real SQLite and real ``training_runs`` rows (storage/versions.py), as the scheduler
process leaves them; the Telegram and Discord deliveries are tested in their adapters'
test files against the fake servers.
"""
from __future__ import annotations

import asyncio
import io
import os

from runs import PROMOTED, finish, finished_run, started_run

from bot import notices
from bot.adapters import console
from bot.notices import RunWatcher, watch_training

REFUSED = ("retrain tiny: val loss 1.5000 -> 1.4000 nats/char, tiny-v2 refused by the "
           "gate, still serving tiny-v1")


async def until(condition, what: str) -> None:
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still waiting for {what}")


def test_runs_finishing_after_the_start_are_announced_once(chat):
    heard: list[str] = []

    async def notify(text: str) -> None:
        heard.append(text)

    async def broken(text: str) -> None:  # a platform that is down
        raise ConnectionError("platform unreachable")

    async def scenario():
        core = chat.core()
        core.add_notifier(broken)
        core.add_notifier(notify)
        await core.db.run(finished_run)  # finished before the bot started: old news
        slow = await core.db.run(started_run)  # still training when the bot starts
        stop, watcher = asyncio.Event(), RunWatcher()
        task = asyncio.create_task(watch_training(core, stop, 0.02, watcher))
        await until(lambda: watcher.ready, "the watcher to start")
        await core.db.run(finished_run, "tiny", "refused")  # overtakes the slow one
        await until(lambda: len(heard) >= 1, "the first notice")
        await core.db.run(finish, slow, "failed")
        await until(lambda: len(heard) >= 2, "the second notice")
        stop.set()
        await task
        assert await core.db.run(watcher.poll) == []  # nothing is announced twice
        assert heard == [REFUSED, "retrain tiny failed: killed (timeout)"]
    chat.run(scenario)


def test_more_than_a_batch_above_an_unfinished_run_is_still_news(chat, monkeypatch):
    monkeypatch.setattr(notices, "BATCH", 2)

    async def scenario():
        core = chat.core()
        await core.db.run(started_run)  # stuck: holds the watermark below every id
        for _ in range(5):  # old news, more than two batches of it
            await core.db.run(finished_run)
        watcher = RunWatcher()
        await core.db.run(watcher.start)
        assert watcher.ready and await core.db.run(watcher.poll) == []
        await core.db.run(finished_run, "tiny", "refused")
        assert await core.db.run(watcher.poll) == [REFUSED]
        assert await core.db.run(watcher.poll) == []
    chat.run(scenario)


def test_notices_off_when_the_interval_is_zero(chat):
    async def scenario():
        core = chat.core(notify_every_s=0)
        await asyncio.wait_for(watch_training(core, asyncio.Event()), 30)  # returns at once
    chat.run(scenario)


def test_the_console_prints_a_notice(chat):
    async def scenario():
        core = chat.core()
        read, write = os.pipe()
        stdin, stdout = os.fdopen(read, encoding="utf-8"), io.StringIO()
        task = asyncio.create_task(console.serve(core, stdin=stdin, stdout=stdout))
        await until(lambda: "Ctrl-D quits." in stdout.getvalue(), "the console")
        watcher = RunWatcher()
        await core.db.run(watcher.start)
        await core.db.run(finished_run)
        for message in await core.db.run(watcher.poll):
            await core.notify_admins(message)
        os.close(write)  # end of input: the console stops
        await asyncio.wait_for(task, 60)
        stdin.close()
        assert f"[admin] {PROMOTED}\n" in stdout.getvalue()
        assert core.notifiers == []  # unregistered when the console stopped
    chat.run(scenario)
