"""One Telegram poller per bot: a lock in the database, held while polling.

Telegram hands each update to one getUpdates caller and answers a second poller of the
same bot with 409 Conflict, so two polling processes fight over every batch. Polling
therefore stays one process; replicas take updates in webhook mode behind a load
balancer. The lock is ``storage.leadership.Leadership`` under the name
``telegram-poller:<bot id>`` (a PostgreSQL advisory lock, or a lease row on SQLite,
taken at once from a dead process of this host so a restart after ``kill -9`` is not
refused), so it needs nothing beside the database the bot already uses.

    lock = PollerLock(core.db.url, bot_id)
    await lock.acquire()        # AnotherPoller (a ConfigError) if someone else polls
    lost = asyncio.create_task(lock.watch())   # returns if the lock is ever lost
    ...
    await lock.release()
"""
from __future__ import annotations

import asyncio
import logging

from settings import ConfigError
from storage.leadership import Leadership

log = logging.getLogger(__name__)


class AnotherPoller(ConfigError):
    """Another process polls Telegram for this bot on this database."""


class PollerLock:
    """This process's claim to be the one poller of bot ``bot_id``."""

    def __init__(self, url: str, bot_id: int):
        self.leader = Leadership(url, f"telegram-poller:{bot_id}", reclaim_dead=True)

    async def acquire(self) -> None:
        """Take the lock; ``AnotherPoller`` if it is held, ``RuntimeError`` if the
        database could not be asked (retried by the supervisor)."""
        if await asyncio.to_thread(self.leader.keep):
            return
        error = self.leader.error
        await self.release()
        if error:
            raise RuntimeError(f"the Telegram poller lock could not be taken: {error}")
        raise AnotherPoller(
            "another process is polling Telegram for this bot (it holds the poller lock "
            "in the database); stop it first, or run several bots with [telegram] mode = "
            "\"webhook\" behind a load balancer")

    async def watch(self) -> None:
        """Return once the lock is lost (the database connection holding it went)."""
        while await asyncio.to_thread(self.leader.keep):
            await asyncio.sleep(self.leader.every_s)
        log.error("telegram: the poller lock was lost (%s); polling stops",
                  self.leader.error or "another process took it")

    async def release(self) -> None:
        await asyncio.to_thread(self.leader.close)
