"""Per-user rate limits shared by bot replicas through the real Redis (127.0.0.1:6379).

Two limiters (and two cores) stand for two replicas: one user's budget is shared, 5 of
10 requests across both, with one "slow down" between them. Redis going away (a proxy
whose plug is pulled) fails open to per-replica buckets with a warning, and Redis is
used again once it is back. Each test uses its own key prefix and deletes its keys.
Without a Redis the tests skip saying why; under CI (``CI`` set) they fail instead.

    .venv/bin/python -m pytest tests/bot/test_ratelimit_redis.py -q
"""
from __future__ import annotations

import asyncio
import logging
import os
import uuid

import pytest
import redis
from tcp_proxy import Proxy

from bot import ratelimit_redis
from bot.core import Request
from bot.ratelimit import RateLimiter
from bot.ratelimit_redis import SharedRateLimiter, make_limiter

URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SLOW = 0.01  # tokens a minute: nothing refills during a test


@pytest.fixture
def prefix():
    client = redis.Redis.from_url(URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the shared limits, but no Redis at {URL}: {exc}")
        pytest.skip(f"no Redis at {URL}: {exc}")
    prefix = f"stylebot-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


async def ten_requests(limiters) -> tuple[int, int]:
    """(allowed, refusals said) of 10 requests of one user, alternating replicas."""
    allowed = told = 0
    for i in range(10):
        wait, say_so = await limiters[i % len(limiters)].check(("telegram", "42"))
        allowed += wait == 0
        told += say_so
    return allowed, told


def test_two_replicas_share_one_users_budget(prefix):
    async def scenario():
        replicas = [SharedRateLimiter(5, SLOW, URL, prefix) for _ in range(2)]
        try:
            assert await ten_requests(replicas) == (5, 1)
            # Another user has a budget of their own.
            assert (await replicas[1].check(("telegram", "43")))[0] == 0
        finally:
            for limiter in replicas:
                await limiter.close()
        separate = [RateLimiter(5, SLOW) for _ in range(2)]  # what the issue observed
        assert (await ten_requests(separate))[0] == 10
    asyncio.run(scenario())


def test_two_cores_configured_with_redis_share_the_budget(chat, prefix):
    async def scenario():
        cores = [chat.core(rate_burst=5, rate_per_minute=SLOW, redis_url=URL,
                           redis_prefix=prefix) for _ in range(2)]
        replies = [await cores[i % 2].handle(Request("console", "u1", "c1", text="/help"))
                   for i in range(10)]
        # 5 answered, 1 "slow down"; the other 4 refusals are silent (no reply at all).
        said = [r.text for r in replies if not r.silent]
        assert len(said) == 6 and sum(t.startswith("Slow down") for t in said) == 1
    chat.run(scenario)


def test_redis_down_fails_open_to_per_replica_buckets(prefix, caplog, monkeypatch):
    monkeypatch.setattr(ratelimit_redis, "RETRY_S", 0.0)  # try Redis again at once
    host, port = URL.split("//")[1].split("/")[0].split(":")
    proxy = Proxy((host, int(port))).up()

    async def scenario():
        limiter = SharedRateLimiter(2, SLOW, f"redis://127.0.0.1:{proxy.port}/0", prefix)
        other = SharedRateLimiter(2, SLOW, URL, prefix)
        try:
            assert (await limiter.check("u"))[0] == 0  # one token spent in Redis
            proxy.down()
            with caplog.at_level(logging.WARNING, "bot.ratelimit_redis"):
                outage = [(await limiter.check("u"))[0] for _ in range(3)]
            assert outage[:2] == [0, 0] and outage[2] > 0  # the local bucket, burst 2
            assert "Redis unavailable" in caplog.text
            proxy.up()
            assert (await limiter.check("u"))[0] == 0  # Redis again: its last token
            assert (await other.check("u"))[0] > 0  # shared: the budget is spent
        finally:
            proxy.down()
            await limiter.close()
            await other.close()
    asyncio.run(scenario())


def test_no_redis_configured_keeps_the_in_process_buckets():
    assert isinstance(make_limiter(5, 12, "", env={}), RateLimiter)
    shared = make_limiter(5, 12, "", env={"REDIS_URL": URL})
    assert isinstance(shared, SharedRateLimiter)
    asyncio.run(shared.close())
