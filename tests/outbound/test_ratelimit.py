"""The leaky bucket, in memory and in a real Redis (shared between limiter instances)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from msgr_bridge.outbound.ratelimit import (
    UNLIMITED,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    limit_from,
    make_rate_limiter,
)
from msgr_bridge.schema import Capabilities

SLOW = Limit(rate_per_s=0.01, burst=2)  # one send per 100 s after a burst of 2: waits are ~100 s
KEY = ("net", "acct-1", "room-1")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        rl: RateLimiter = MemoryRateLimiter()
    else:
        url = request.getfixturevalue("redis_url")
        rl = RedisRateLimiter(url, prefix=f"test:{uuid.uuid4().hex}")
    try:
        yield rl
    finally:
        await rl.aclose()


async def test_burst_then_wait_per_conversation(limiter: RateLimiter) -> None:
    limiter.set_limit("net", SLOW)
    assert await limiter.acquire(KEY) == 0.0
    assert await limiter.acquire(KEY) == 0.0
    wait = await limiter.acquire(KEY)
    assert 50 < wait <= 100
    assert await limiter.acquire(KEY) == pytest.approx(wait, abs=5)  # a refused acquire counts nothing
    assert await limiter.acquire(("net", "acct-1", "room-2")) == 0.0
    assert await limiter.acquire(("net", "acct-2", "room-1")) == 0.0


async def test_undeclared_rate_is_unlimited_but_pauses_still_hold(limiter: RateLimiter) -> None:
    limiter.set_limit("net", limit_from(Capabilities()))
    assert all([await limiter.acquire(KEY) == 0.0 for _ in range(50)])
    await limiter.pause(KEY, 30)
    wait = await limiter.acquire(KEY)
    assert 20 < wait <= 30
    await limiter.pause(KEY, 1)  # a shorter back-off never shortens the pause
    assert await limiter.acquire(KEY) > 20
    assert await limiter.acquire(("net", "acct-1", "other")) == 0.0


async def test_overrides_lift_declared_limits() -> None:
    rl = make_rate_limiter("", overrides={"net": UNLIMITED})
    rl.set_limit("net", SLOW)
    assert all([await rl.acquire(KEY) == 0.0 for _ in range(10)])


def test_limit_from_capabilities() -> None:
    assert limit_from(Capabilities(rate_limit_per_s=5, rate_limit_burst=10)) == Limit(5, 10)
    assert limit_from(Capabilities(rate_limit_per_s=5)) == Limit(5, 1)
    assert limit_from(Capabilities()) == UNLIMITED


async def test_redis_buckets_are_shared_between_instances(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    made = make_rate_limiter(redis_url)
    assert isinstance(made, RedisRateLimiter)
    await made.aclose()
    a = RedisRateLimiter(redis_url, prefix=prefix)
    b = RedisRateLimiter(redis_url, prefix=prefix)
    try:
        for rl in (a, b):
            rl.set_limit("net", SLOW)
        assert await a.acquire(KEY) == 0.0
        assert await b.acquire(KEY) == 0.0  # the burst of 2 is shared: used up now
        assert await a.acquire(KEY) > 50
        assert await b.acquire(KEY) > 50
        other = ("net", "acct-1", "room-9")
        await a.pause(other, 30)  # a 429 seen by one process holds the bucket for all of them
        assert 20 < await b.acquire(other) <= 30
        assert b.key(("a:b", "c", "d")) != b.key(("a", "b:c", "d"))
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_account_limit_replaces_the_network_limit_for_that_account_only(
    limiter: RateLimiter,
) -> None:
    limiter.set_limit("net", Limit(rate_per_s=2.0, burst=3))
    limiter.set_account_limit("net", "fast", Limit(rate_per_s=20.0, burst=20))
    fast, slow = ("net", "fast", "room-1"), ("net", "slow", "room-1")
    assert [await limiter.acquire(fast) for _ in range(20)] == [0.0] * 20
    assert [await limiter.acquire(slow) for _ in range(3)] == [0.0] * 3
    assert await limiter.acquire(slow) > 0  # the network's pace for every other account
    limiter.set_account_limit("net", "slower", SLOW)  # lowered too
    slower = ("net", "slower", "room-1")
    assert [await limiter.acquire(slower) for _ in range(2)] == [0.0, 0.0]
    assert await limiter.acquire(slower) > 50


async def test_a_network_override_wins_over_an_account_limit() -> None:
    limiter = MemoryRateLimiter({"net": UNLIMITED})
    limiter.set_limit("net", SLOW)
    limiter.set_account_limit("net", "acct-1", SLOW)
    assert [await limiter.acquire(KEY) for _ in range(10)] == [0.0] * 10
