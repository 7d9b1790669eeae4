"""The in-flight limit: at most ``[bot] max_in_flight`` generations (and pictures) at once.

    slots = Slots(64)                                   # this process only
    slots = Slots(64, "redis://127.0.0.1:6379/0")       # and across every bot replica
    async with slots:                                   # one generation
        ...
    await slots.close()

Always a local semaphore (this process's share). With ``REDIS_URL`` or ``[redis] url``
every holder also takes a slot in Redis: a sorted set of leases (member: a random
token, score: its expiry by the Redis server's clock) that one Lua script trims of
expired leases, counts and adds to atomically, so the replicas together run at most
``limit``. A lease ends on release, or by itself after ``LEASE_S`` (longer than any
generation: the inference timeout is 60 s), so a replica killed mid-generation frees
its slots without anyone's help. A waiter polls (10 ms doubling to 100 ms) and gives up
with ``Busy`` after ``LEASE_S``.

Redis down or slow: fail open to the local semaphore alone (each replica keeps its own
``max_in_flight``), one warning, Redis tried again after ``RETRY_S``; a bound on
concurrent work is not worth refusing every request while Redis is away.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving.client import Busy

log = logging.getLogger(__name__)
PREFIX = "stylebot:"
LEASE_S = 120.0
TIMEOUT_S = 0.25  # connect and reply
RETRY_S = 5.0  # after a failure, the local semaphore alone for this long

# KEYS: the leases' sorted set. ARGV: limit, token, lease in ms. Returns 1: got one.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class Slots:
    """``async with slots:`` holds one slot; see the module docstring."""

    def __init__(self, limit: int, redis_url: str = "", prefix: str = PREFIX,
                 env: Mapping[str, str] | None = None, lease_s: float = LEASE_S):
        self.limit, self.lease_s = limit, lease_s
        self.local = asyncio.Semaphore(limit)
        url = (os.environ if env is None else env).get("REDIS_URL") or redis_url
        self.redis = (aioredis.Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                              socket_connect_timeout=TIMEOUT_S)
                      if url else None)
        self.script = self.redis.register_script(ACQUIRE) if self.redis else None
        self.key = f"{prefix}inflight"
        self._held: dict[asyncio.Task | None, str] = {}  # task -> its lease token
        self._down_until = float("-inf")

    async def __aenter__(self) -> Slots:
        await self.local.acquire()
        try:
            token = await self._shared()
        except BaseException:
            self.local.release()
            raise
        if token is not None:
            self._held[asyncio.current_task()] = token
        return self

    async def __aexit__(self, *exc_info) -> None:
        token = self._held.pop(asyncio.current_task(), None)
        self.local.release()
        if token is not None and self.redis is not None:
            try:
                await self.redis.zrem(self.key, token)
            except (RedisError, OSError):
                pass  # the lease expires by itself

    async def _shared(self) -> str | None:
        """A lease token once a shared slot is ours; None: no Redis (or it is down)."""
        if self.script is None:
            return None
        token, delay = uuid.uuid4().hex, 0.01
        deadline = time.monotonic() + self.lease_s
        while time.monotonic() >= self._down_until:
            try:
                if await self.script(keys=[self.key],
                                     args=[self.limit, token, int(self.lease_s * 1000)]):
                    return token
            except (RedisError, OSError) as exc:
                self._down_until = time.monotonic() + RETRY_S
                log.warning("in-flight limit: Redis unavailable (%s); this replica's "
                            "limit alone for %g s", exc or type(exc).__name__, RETRY_S)
                return None
            if time.monotonic() > deadline:
                raise Busy("no free in-flight slot across the replicas")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        return None

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
