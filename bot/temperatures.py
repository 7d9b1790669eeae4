"""Temperatures chosen without waiting on the database: a snapshot refreshed in the background.

Every generation needs a temperature: the chat's, the style's or the global one an admin
set, else a draw of the ratings bandit (storage/bandit.py), else the style's from
config.toml. Reading those from the database for each request would make every reply
wait on it: during a PostgreSQL outage every text became "Sorry", and a SQLite lock held
25 s delayed every reply by as long. Instead one query loads every temperature setting
and the bandit's evidence into a ``Snapshot``; requests choose from it in memory.

    temps = TemperatureCache(db.run, book, bandit_config, wait_s=2.0)
    value, source = await temps.choose(request, style, rng)   # never waits past wait_s
    await temps.refresh()   # after this process changed a setting (/temperature)

The snapshot is reloaded in the background once it is ``REFRESH_S`` old (a change made
by another process shows within that); while the database is down the last snapshot
keeps serving, and before the first one arrives a request waits at most ``wait_s``,
then uses the style's configured temperature.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.bandit import Arm, BanditConfig, cached_arms, draw
from storage.models import Chat, Setting
from storage.records import MAX_ID_CHARS, clean_text
from storage.settings import TEMPERATURE

log = logging.getLogger(__name__)
REFRESH_S = 5.0  # the snapshot's age at which a request starts a reload
RETRY_S = 5.0  # after a failed reload, the next try waits this long
CONFIGURED = "default"  # the source of a style's config.toml temperature


@dataclass(frozen=True)
class Snapshot:
    """Every temperature setting and each style's bandit arms at ``loaded_at``."""

    fixed: dict[tuple, float]  # ("global",), ("style", name), ("chat", platform, id)
    arms: dict[str, list[Arm]] = field(default_factory=dict)
    loaded_at: float = 0.0  # time.monotonic()

    def choose(self, request, style, rng, bandit: BanditConfig | None
               ) -> tuple[float, str]:
        """The temperature ``Core.temperature`` uses: chat > style > global > learned."""
        chat = clean_text(request.chat_id or "?", MAX_ID_CHARS)  # as storage keys chats
        for key in (("chat", request.platform, chat), ("style", style.name), ("global",)):
            if key in self.fixed:
                return self.fixed[key], key[0]
        if bandit is None or style.name not in self.arms:
            return style.temperature, CONFIGURED
        return draw(self.arms[style.name], rng, bandit)


def load_snapshot(session: Session, styles: list[str], bandit: BanditConfig | None
                  ) -> Snapshot:
    """One unit of work for ``Database.run``: the settings and the arms of ``styles``."""
    rows = session.execute(
        select(Setting.scope, Setting.style, Chat.platform, Chat.external_id, Setting.value)
        .outerjoin(Chat, Chat.id == Setting.chat_id).where(Setting.name == TEMPERATURE))
    fixed: dict[tuple, float] = {}
    for scope, style, platform, external_id, value in rows:
        key = {"global": ("global",), "style": ("style", style),
               "chat": ("chat", platform, external_id)}[scope]
        fixed[key] = value
    arms = {s: cached_arms(session, s, bandit) for s in styles} if bandit else {}
    return Snapshot(fixed, arms, time.monotonic())


class TemperatureCache:
    """The latest ``Snapshot`` and the background task that reloads it (event loop only)."""

    def __init__(self, run, book, bandit: BanditConfig | None, wait_s: float):
        # run(fn, *args): a unit of work off the loop, as Database.run
        self.run, self.styles, self.bandit, self.wait_s = run, list(book.styles), bandit, wait_s
        self.snapshot: Snapshot | None = None
        self._task: asyncio.Task | None = None
        self._started = self._applied = 0  # reloads begun / the newest one applied
        self._next_try = 0.0  # after a failure: no reload before this (monotonic)

    async def choose(self, request, style, rng) -> tuple[float, str]:
        """(temperature, source) for one request; waits on nothing once loaded."""
        snap = self.snapshot
        if snap is None or time.monotonic() - snap.loaded_at >= REFRESH_S:
            task = self._reload()
            if snap is None and task is not None:
                await self._bounded(task)
                snap = self.snapshot
        if snap is None:  # the database has not answered yet: config.toml's value
            return style.temperature, CONFIGURED
        return snap.choose(request, style, rng, self.bandit)

    async def refresh(self) -> None:
        """Reload now (waiting at most ``wait_s``): this process changed a setting."""
        await self._bounded(self._reload(force=True))

    def _reload(self, force: bool = False) -> asyncio.Task | None:
        running = self._task is not None and not self._task.done()
        if not force and (running or time.monotonic() < self._next_try):
            return self._task if running else None
        self._started += 1
        self._task = asyncio.create_task(self._load(self._started))
        return self._task

    async def _load(self, number: int) -> None:
        try:
            snap = await self.run(load_snapshot, self.styles, self.bandit)
        except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot
            if not self._next_try:  # once per outage, not every RETRY_S
                log.warning("temperatures not reloaded (%s); using the %s", exc,
                            "last ones" if self.snapshot else "configured ones")
            self._next_try = time.monotonic() + RETRY_S
            return
        self._next_try = 0.0
        if number > self._applied:  # an older reload finishing late must not win
            self.snapshot, self._applied = snap, number

    async def _bounded(self, task: asyncio.Task | None) -> None:
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self.wait_s)
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
