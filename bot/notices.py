"""Admin notices: tell the bot's admins when a training run finishes.

The scheduler (``python -m training.scheduler``, its own process under the Procfile)
writes every run to ``training_runs``; the bot polls that table every
``[bot] notify_every_s`` seconds and sends each newly finished run's one-line summary
(``training.retrain.RunResult.message``) through ``Core.notify_admins``, i.e. to every
notifier the adapters registered (Telegram and Discord DM the admins, the console
prints). ``python -m bot`` starts it beside the adapters:

    task = asyncio.create_task(watch_training(core, stop))

Runs that had finished before the bot started are not announced again.
"""
from __future__ import annotations

import asyncio
import logging

from training.registry_ops import finished_runs, oldest_unfinished_run
from training.retrain import RunResult

log = logging.getLogger(__name__)
BATCH = 200  # finished runs read per poll (more wait for the next one)


class RunWatcher:
    """Which finished runs are news: a watermark id plus the ids announced above it.

    Why not just "the newest id seen": runs of different styles may overlap, so run 7
    can finish before run 6 does; the watermark stays below the oldest unfinished run
    and the ids already announced above it are remembered.
    """

    def __init__(self) -> None:
        self.after_id = 0
        self.announced: set[int] = set()
        self.ready = False  # start() done: runs finishing from now on are news

    def start(self, session) -> None:
        """Take every run finished so far as announced (a unit of work for db.run)."""
        while rows := self._news(session):  # more than a batch may have finished
            self._advance(session, rows)
        self.ready = True

    def poll(self, session) -> list[str]:
        """Messages for the runs finished since the last poll (a unit of work)."""
        rows = self._news(session)
        messages = [RunResult.from_row(r).message() for r in rows]
        self._advance(session, rows)
        return messages

    def _news(self, session) -> list:
        """Up to a batch of finished runs not announced yet.

        Pages past announced ids: while an unfinished run holds the watermark down, a
        whole batch above it may be announced already, and the news lies beyond.
        """
        after = self.after_id
        while True:
            rows = finished_runs(session, after, BATCH)
            news = [r for r in rows if r.id not in self.announced]
            if news or len(rows) < BATCH:
                return news
            after = rows[-1].id

    def _advance(self, session, rows) -> None:
        self.announced.update(r.id for r in rows)
        pending = oldest_unfinished_run(session)
        top = max(self.announced, default=self.after_id)
        self.after_id = top if pending is None else max(self.after_id,
                                                        min(top, pending - 1))
        self.announced = {i for i in self.announced if i > self.after_id}


async def watch_training(core, stop: asyncio.Event, every_s: float | None = None,
                         watcher: RunWatcher | None = None) -> None:
    """Until ``stop``: announce finished training runs to the admins. Never raises.

    ``every_s`` defaults to ``[bot] notify_every_s``; pass a ``watcher`` to see its
    state (tests wait for ``watcher.ready``).
    """
    every_s = core.settings.notify_every_s if every_s is None else every_s
    if every_s <= 0:
        return
    watcher = watcher or RunWatcher()
    while not stop.is_set():
        try:
            if not watcher.ready:  # retried until the database answers
                await core.db.run(watcher.start)
            else:
                for message in await core.db.run(watcher.poll):
                    await core.notify_admins(message)
        except Exception:  # a database outage: try again next time
            log.exception("looking for finished training runs failed")
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
