"""The in-flight limit shared by bot replicas through the real Redis (127.0.0.1:6379).

Two ``Slots`` stand for two replicas with ``max_in_flight = 2`` in all: while one holds
both slots the other waits, and gets one when a slot is released or when a killed
holder's lease runs out. Redis unreachable: each replica's own limit, and a warning.
Skips without a Redis (fails under CI), like tests/bot/test_ratelimit_redis.py.

    .venv/bin/python -m pytest tests/bot/test_slots.py -q
"""
from __future__ import annotations

import asyncio
import logging

from test_ratelimit_redis import URL, prefix  # noqa: F401 - the fixture

from bot.slots import Slots


async def hold(slots: Slots, entered: asyncio.Event, leave: asyncio.Event) -> None:
    async with slots:
        entered.set()
        await leave.wait()


def test_two_replicas_share_the_in_flight_limit(prefix):  # noqa: F811
    async def scenario():
        a, b = Slots(2, URL, prefix), Slots(2, URL, prefix)
        events = [(asyncio.Event(), asyncio.Event()) for _ in range(3)]
        tasks = [asyncio.create_task(hold(a, *events[0])),
                 asyncio.create_task(hold(a, *events[1]))]
        try:
            await asyncio.wait_for(asyncio.gather(events[0][0].wait(), events[1][0].wait()),
                                   30)
            tasks.append(asyncio.create_task(hold(b, *events[2])))
            await asyncio.sleep(0.3)  # several polls: both slots are taken in Redis
            assert not events[2][0].is_set()
            events[0][1].set()  # replica a finishes one generation
            await asyncio.wait_for(events[2][0].wait(), 30)
        finally:
            for _, leave in events:
                leave.set()
            await asyncio.gather(*tasks)
            await a.close()
            await b.close()
    asyncio.run(scenario())


def test_a_killed_replicas_slots_expire(prefix):  # noqa: F811
    async def scenario():
        dead = Slots(1, URL, prefix, lease_s=0.5)
        await dead.__aenter__()  # and never leaves: its process was killed
        await dead.close()
        alive = Slots(1, URL, prefix)  # waits up to its own (long) lease
        entered, leave = asyncio.Event(), asyncio.Event()
        leave.set()
        await asyncio.wait_for(hold(alive, entered, leave), 30)
        assert entered.is_set()
        await alive.close()
    asyncio.run(scenario())


def test_redis_unreachable_keeps_the_local_limit(caplog):
    async def scenario():
        slots = Slots(1, "redis://127.0.0.1:1/0", env={})  # nothing listens on port 1
        with caplog.at_level(logging.WARNING, "bot.slots"):
            async with slots:
                assert slots.local.locked()  # this replica's own bound still holds
        assert "Redis unavailable" in caplog.text
        await slots.close()
    asyncio.run(scenario())
