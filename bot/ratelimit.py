"""Per-user token buckets: a burst of requests, then a steady refill rate.

Used on the event loop only (no locks). Idle buckets are dropped so memory stays
bounded however many users pass by.

A refusal is worth saying once: someone flooding 30 commands gets one "slow down" per
cool-down (until a token is back), not 25, because every reply is one more message
against the platform's own flood limits.

    limiter = RateLimiter(burst=5, per_minute=12)
    wait_s = limiter.take(("telegram", "42"))   # 0.0 = allowed, else seconds to wait
    if wait_s and limiter.tell(("telegram", "42"), wait_s): ...   # first refusal: say so
    wait_s, say_so = await limiter.check(("telegram", "42"))   # both at once

Several bot replicas share one budget per user through Redis instead
(bot/ratelimit_redis.py, when ``REDIS_URL`` or ``[redis] url`` is set).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable

MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, burst: float, per_minute: float,
                 clock: Callable[[], float] = time.monotonic):
        self.burst, self.rate = float(burst), per_minute / 60.0
        self.clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)
        self._told: dict[Hashable, float] = {}  # key -> end of its cool-down

    def take(self, key: Hashable) -> float:
        """Spend one token: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / self.rate

    def _store(self, key: Hashable, tokens: float, now: float) -> None:
        if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
            # A full bucket is the same as no bucket: drop those, they lose nothing.
            full_after = (self.burst / self.rate) if self.rate else float("inf")
            self._buckets = {k: v for k, v in self._buckets.items()
                             if now - v[1] < full_after}
        self._buckets[key] = (tokens, now)

    async def check(self, key: Hashable) -> tuple[float, bool]:
        """``take``, and whether to say so (``tell``): the interface the core uses, the
        same as the Redis-backed limiter's (bot/ratelimit_redis.py)."""
        wait = self.take(key)
        return wait, bool(wait) and self.tell(key, wait)

    async def close(self) -> None:
        """Nothing to close (the shared limiter closes its connection)."""

    def tell(self, key: Hashable, wait: float) -> bool:
        """Whether this refusal (``wait`` from ``take``) is the first of its cool-down.

        True once, then False for every refusal until ``wait`` seconds have passed.
        """
        now = self.clock()
        if now < self._told.get(key, float("-inf")):
            return False
        if len(self._told) >= MAX_BUCKETS and key not in self._told:
            self._told = {k: end for k, end in self._told.items() if end > now}
        self._told[key] = now + wait
        return True
