"""Every Telegram update answered, and answered once, across crashes and redeliveries.

python-telegram-bot confirms updates to Telegram (the next getUpdates offset) as soon
as they are in its queue, before they are handled, so a crash lost whatever was in
flight. Here the update queue (``JournalingQueue``) records each update in the database
(``storage/updates.py``) before the Updater can confirm it, the update processor
(``JournalingProcessor``) marks it done once its handler returned (the reply sent or
recorded as undelivered), and ``replay_unfinished`` hands what a crash interrupted
back to the queue at start: at-least-once delivery.

Duplicates are dropped twice over: ``UpdateWindow`` remembers the last update ids in
memory (a webhook retried, the same update posted twice), and the journal refuses an
update id it already holds (Telegram redelivering, after a restart, updates a crash kept
it from confirming). One gap stays: a reply sent just before a crash whose done mark
was not yet written is sent again; Telegram offers no way to ask whether it arrived.

Webhook replicas share the journal (one database): the replica that records an update
first is its one handler, so a repeat posted to another replica is dropped there too.
A replica cannot replay every unfinished update at start, since its live siblings hold
some of them; instead ``share_journal`` renews the rows this process holds every
``takeover_s / 4`` and takes over rows nobody renewed for ``takeover_s`` (a replica
killed with updates recorded but unanswered). Polling is one process (the poller lock,
telegram_polling.py), so there ``replay_unfinished`` at start finishes everything.

    window = UpdateWindow()
    journal = UpdateJournal(core.db, bot_id)
    builder.update_queue(JournalingQueue(window, journal))
    builder.concurrent_updates(JournalingProcessor(256, journal))
    await replay_unfinished(app)          # polling: after app.start(), before polling
    task = asyncio.create_task(share_journal(app, takeover_s))   # webhook replicas
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections import deque

from telegram import Update
from telegram.ext import Application, SimpleUpdateProcessor

from storage.database import Database
from storage.errors import StorageError
from storage.updates import (
    claim_stale_updates,
    finish_update,
    prune_updates,
    record_update,
    renew_updates,
    unfinished_updates,
)

log = logging.getLogger(__name__)
WINDOW = 10_000  # update ids remembered in memory
PRUNE_EVERY_S = 3600.0  # webhook replicas delete journal rows past storage.updates.KEEP


class UpdateWindow:
    """The last ``size`` update ids seen, in memory.

    The whole interface is ``seen``, so a store shared by several processes (Redis) can
    take its place.
    """

    def __init__(self, size: int = WINDOW):
        self.size = size
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    def seen(self, update_id: int) -> bool:
        """True if ``update_id`` came before (within the window); else remember it."""
        if update_id in self._ids:
            return True
        self._ids.add(update_id)
        self._order.append(update_id)
        if len(self._order) > self.size:
            self._ids.discard(self._order.popleft())
        return False


class UpdateJournal:
    """Received updates in the database until answered (table ``telegram_updates``).

    The journal must never silence the bot: when it cannot write (the database is down),
    the update is handled without a record, and a warning says so.
    """

    def __init__(self, db: Database, bot_id: int):
        self.db, self.bot_id = db, bot_id
        self.held: set[int] = set()  # recorded or claimed here, not yet done

    async def record(self, update: Update) -> bool:
        """Keep ``update``; False if it was recorded before (a repeat: drop it)."""
        try:
            new = await self.db.run(record_update, self.bot_id, update.update_id,
                                    update.to_json())
            if new:
                self.held.add(update.update_id)
            return new
        except Exception as exc:  # StorageError, or anything else: answer regardless
            log.warning("telegram update %d not journaled (%s): a crash now loses it",
                        update.update_id, exc)
            return True

    async def done(self, update_id: int) -> None:
        self.held.discard(update_id)
        try:
            await self.db.run(finish_update, self.bot_id, update_id)
        except Exception as exc:
            log.warning("telegram update %d answered but not marked done (%s): it is "
                        "answered again after a restart", update_id, exc)

    async def unfinished(self) -> list[dict]:
        """Updates recorded but never finished (a crash), oldest first; prunes old ones."""
        await self.db.run(prune_updates)
        return [json.loads(body) for body in
                await self.db.run(unfinished_updates, self.bot_id)]

    async def renew(self) -> None:
        """Tell the other replicas the updates held here are still being answered."""
        await self.db.run(renew_updates, self.bot_id, sorted(self.held))

    async def claim_stale(self, takeover_s: float) -> list[dict]:
        """Updates a dead replica left unfinished, now held here (oldest first)."""
        bodies = await self.db.run(claim_stale_updates, self.bot_id,
                                   dt.timedelta(seconds=takeover_s))
        return [json.loads(body) for body in bodies]


class JournalingQueue(asyncio.Queue):
    """The Application's update queue: drops repeats, records the rest before queueing.

    The Updater awaits ``put`` for each update before it asks for the next batch, which
    is what confirms the batch to Telegram: so nothing is confirmed before it is on disk.
    """

    def __init__(self, window: UpdateWindow, journal: UpdateJournal | None = None):
        super().__init__()
        self.window, self.journal = window, journal

    async def put(self, item) -> None:
        if isinstance(item, Update):
            if self.window.seen(item.update_id):
                log.info("telegram update %d received again: dropped", item.update_id)
                return
            if self.journal is not None and not await self.journal.record(item):
                log.info("telegram update %d already journaled: dropped", item.update_id)
                return
        await super().put(item)

    async def put_recorded(self, update: Update) -> None:
        """Queue an update the journal already holds (a replay after a crash)."""
        self.window.seen(update.update_id)
        if self.journal is not None:
            self.journal.held.add(update.update_id)
        await super().put(update)


class JournalingProcessor(SimpleUpdateProcessor):
    """Runs updates concurrently and marks each done in the journal once handled.

    A handler's exception has gone to the error handler by then; an update cancelled
    by a shutdown is not marked, so the next start finishes it.
    """

    __slots__ = ("journal",)

    def __init__(self, max_concurrent_updates: int, journal: UpdateJournal | None):
        super().__init__(max_concurrent_updates)
        self.journal = journal

    async def do_process_update(self, update, coroutine) -> None:
        await coroutine
        if self.journal is not None and isinstance(update, Update):
            await self.journal.done(update.update_id)


async def replay_unfinished(app: Application) -> int:
    """Queue the updates a crash left unfinished; how many. Call after ``app.start()``."""
    queue = app.update_queue
    if not isinstance(queue, JournalingQueue) or queue.journal is None:
        return 0
    try:
        pending = await queue.journal.unfinished()
    except StorageError as exc:
        log.warning("unfinished telegram updates not replayed (%s)", exc)
        return 0
    for data in pending:
        await queue.put_recorded(Update.de_json(data, app.bot))
    if pending:
        log.warning("telegram: %d update(s) interrupted by a stop or crash are handled "
                    "again", len(pending))
    return len(pending)


async def share_journal(app: Application, takeover_s: float) -> None:
    """Until cancelled: renew what this replica holds, take over what a dead one left."""
    queue = app.update_queue
    if not isinstance(queue, JournalingQueue) or queue.journal is None:
        return
    journal, pruned = queue.journal, float("-inf")
    while True:
        await asyncio.sleep(takeover_s / 4)
        try:
            await journal.renew()
            orphans = await journal.claim_stale(takeover_s)
            if time.monotonic() - pruned > PRUNE_EVERY_S:  # polling prunes at start
                await journal.db.run(prune_updates)
                pruned = time.monotonic()
        except StorageError as exc:  # the next round tries again
            log.warning("telegram: update journal not renewed (%s)", exc)
            continue
        for data in orphans:
            await queue.put_recorded(Update.de_json(data, app.bot))
        if orphans:
            log.warning("telegram: %d update(s) left unanswered by a stopped replica are "
                        "handled here", len(orphans))


def bot_id_of(token: str) -> int:
    """The bot's id: the number before the colon of its token (0 if there is none)."""
    head = token.partition(":")[0]
    return int(head) if head.isdigit() else 0
