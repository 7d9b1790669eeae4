"""Per-user token buckets shared by every bot replica, in Redis.

    limiter = make_limiter(burst=5, per_minute=12, redis_url="redis://127.0.0.1:6379/0")
    wait_s, say_so = await limiter.check(("telegram", "42"))  # 0.0: allowed
    await limiter.close()

With ``REDIS_URL`` in the environment or ``[redis] url`` in config.toml, each user's
bucket lives in Redis and one Lua script (redis-py's ``register_script``: EVALSHA,
loaded again if the server forgot it) refills, spends and answers in one atomic step,
timed by the Redis server's clock, so N replicas share one budget: 5 of 10 requests
across two replicas, as on one. The "slow down" cool-down is shared too (``SET NX PX``),
so a flooding user hears it once, not once per replica. Without a URL ``make_limiter``
returns the in-process ``RateLimiter`` (bot/ratelimit.py), the zero-setup default.

Redis down or slow (over ``TIMEOUT_S``): the limiter fails open to the in-process
buckets (per-replica limits, so a user gets up to N times the budget across N
replicas, never unlimited), logs one warning, and tries Redis again after
``RETRY_S``; a rate limit is not worth refusing or delaying every request for.
Keys (``PREFIX`` + ``rl:`` or ``told:`` + platform:user) expire once a bucket is full
again, so Redis holds only users seen recently.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bot console
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Hashable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.ratelimit import RateLimiter

log = logging.getLogger(__name__)
PREFIX = "stylebot:"
TIMEOUT_S = 0.25  # connect and reply; past it the request goes on without Redis
RETRY_S = 5.0  # after a failure, how long to use the in-process buckets only

# KEYS: bucket, cool-down marker. ARGV: burst, tokens per second.
# Returns {wait in ms (0: allowed), 1 if this refusal is the first of its cool-down}.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local full_ms = math.ceil(burst / rate * 1000) + 1000
local wait_ms = 0
if tokens >= 1 then tokens = tokens - 1 else wait_ms = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], full_ms)
if wait_ms == 0 then return {0, 0} end
local told = redis.call('SET', KEYS[2], '1', 'PX', wait_ms, 'NX')
if told then return {wait_ms, 1} end
return {wait_ms, 0}
"""


class SharedRateLimiter:
    """Token buckets in Redis; the in-process ``RateLimiter`` while Redis is away."""

    def __init__(self, burst: float, per_minute: float, url: str, prefix: str = PREFIX):
        self.burst, self.rate, self.prefix = float(burst), per_minute / 60.0, prefix
        self.redis = aioredis.Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                             socket_connect_timeout=TIMEOUT_S)
        self.script = self.redis.register_script(TAKE)
        self.local = RateLimiter(burst, per_minute)
        self._down_until = float("-inf")  # time.monotonic() until which Redis is skipped

    async def check(self, key: Hashable) -> tuple[float, bool]:
        """(seconds to wait, 0.0 if allowed; whether to say so: first of its cool-down)."""
        if time.monotonic() >= self._down_until:
            name = ":".join(map(str, key)) if isinstance(key, tuple) else str(key)
            try:
                wait_ms, told = await self.script(
                    keys=[f"{self.prefix}rl:{name}", f"{self.prefix}told:{name}"],
                    args=[repr(self.burst), repr(self.rate)])
            except (RedisError, OSError) as exc:
                self._down_until = time.monotonic() + RETRY_S
                log.warning("rate limits: Redis unavailable (%s); per-replica buckets "
                            "for %g s", exc or type(exc).__name__, RETRY_S)
            else:
                return int(wait_ms) / 1000.0, bool(told)
        wait = self.local.take(key)
        return wait, bool(wait) and self.local.tell(key, wait)

    async def close(self) -> None:
        await self.redis.aclose()


def make_limiter(burst: float, per_minute: float, redis_url: str = "",
                 prefix: str = PREFIX, env: Mapping[str, str] | None = None
                 ) -> RateLimiter | SharedRateLimiter:
    """The shared limiter when ``REDIS_URL`` (in ``env``, default the environment) or
    ``redis_url`` names a Redis, else the in-process one."""
    redis_url = (os.environ if env is None else env).get("REDIS_URL") or redis_url
    if redis_url:
        return SharedRateLimiter(burst, per_minute, redis_url, prefix)
    return RateLimiter(burst, per_minute)
