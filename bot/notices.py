"""Admin notices: tell the bot's admins when a training run finishes.

The scheduler (``python -m training.scheduler``, its own process under the Procfile)
writes every run to ``training_runs``; the bot polls that table every
``[bot] notify_every_s`` seconds and sends each newly finished run's one-line summary
(``training.retrain.RunResult.message``) through ``Core.notify_admins``, i.e. to every
notifier the adapters registered (Telegram and Discord DM the admins, the console
prints). ``python -m bot`` starts it beside the adapters:

    task = asyncio.create_task(watch_training(core, stop))

Runs that had finished before the bot started are not announced again. With N bot
replicas on one database each notice is still sent once: the replica that claims a run
(``registry_ops.claim_notices``: one conditional UPDATE setting ``notified_at``) sends
it, the others skip it. A notice is claimed before it is sent, so a replica killed in
between loses it (at most once, never twice); a run that finishes while no replica is
running is not announced.
"""
from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text

from storage.models import utcnow
from training.registry_ops import claim_notices
from training.retrain import RunResult

log = logging.getLogger(__name__)
BATCH = 200  # finished runs claimed per poll (more wait for the next one)


class RunWatcher:
    """Claims the notices of runs finishing after ``start()``; each run, whichever
    replica polls first, is claimed once."""

    def __init__(self) -> None:
        self.since = utcnow()
        self.ready = False  # start() done: runs finishing from now on are news

    def start(self, session) -> None:
        """From now on, finished runs are news (a unit of work for db.run; it fails
        while the database is down, and is retried)."""
        session.execute(text("SELECT 1"))
        self.since = utcnow()
        self.ready = True

    def poll(self, session) -> list[str]:
        """Messages for the runs this watcher claimed (a unit of work)."""
        return [RunResult.from_row(r).message()
                for r in claim_notices(session, self.since, BATCH)]


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
