"""Outbound rate limiting: a leaky bucket per (network, account, conversation).

Each bucket drains at the network's declared rate (``Capabilities.rate_limit_per_s``) and holds up to
``rate_limit_burst`` sends at once; a network that declares no rate is unlimited. A connector whose
account settings change its pace (IRC's ``flood_rate``/``flood_burst``, from ``[networks.irc]`` or the
account's own settings) reports it in ``conversation_capabilities()``, and ``set_account_limit`` makes that
account's buckets follow it instead of the network's declared limit (an operator override of the whole
network, ``overrides``, still wins). The bucket is a GCRA
(generic cell rate algorithm): one number per bucket, the "theoretical arrival time" of the next send, so
it costs one small read-modify-write per send whatever the rate.

``acquire(key)`` never blocks and never drops: it returns ``0.0`` when the send may go now (and counts it),
or the seconds to wait before asking again (and counts nothing). ``pause(key, seconds)`` is how a
platform's back-off signal (HTTP 429 Retry-After, Telegram FLOOD_WAIT, i.e. ``RateLimited.retry_after``)
stops a bucket: until then every ``acquire`` returns the remaining pause.

Two backends with the same interface: ``MemoryRateLimiter`` (one process) and ``RedisRateLimiter`` (shared
by every bridge process that uses the same Redis: each call is one atomic Lua script, and the clock is the
Redis server's, so processes on machines with skewed clocks still agree). ``make_rate_limiter(url)`` picks
Redis when ``[redis] url`` is set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..extras import import_extra
from ..schema import Capabilities

BucketKey = tuple[str, str, str]
"""(network, account id, conversation id)."""


@dataclass(frozen=True, slots=True)
class Limit:
    """A sustained rate and a burst. ``rate_per_s=None`` (or <= 0) means unlimited."""

    rate_per_s: float | None
    burst: int = 1

    @property
    def interval(self) -> float:
        return 1.0 / self.rate_per_s if self.rate_per_s and self.rate_per_s > 0 else 0.0

    @property
    def tolerance(self) -> float:
        return max(0, self.burst - 1) * self.interval


UNLIMITED = Limit(None)


def limit_from(capabilities: Capabilities) -> Limit:
    """The default limit a connector declares (unlimited when it declares no rate)."""
    if not capabilities.rate_limit_per_s:
        return UNLIMITED
    return Limit(capabilities.rate_limit_per_s, max(1, capabilities.rate_limit_burst or 1))


class RateLimiter(Protocol):
    """What the delivery worker uses. Limits are per network; buckets per (network, account, conversation)."""

    def set_limit(self, network: str, limit: Limit) -> None:
        """The limit of every bucket of ``network`` (normally ``limit_from(connector.capabilities)``)."""
        ...

    def has_limit(self, network: str) -> bool: ...

    def set_account_limit(self, network: str, account_id: str, limit: Limit) -> None:
        """The limit of every bucket of one account (its connector's own capabilities, set from the
        account's settings), instead of the network's."""
        ...

    async def acquire(self, key: BucketKey) -> float:
        """0.0 and one send counted, or the seconds to wait (nothing counted)."""
        ...

    async def pause(self, key: BucketKey, seconds: float) -> None:
        """Hold the bucket for ``seconds`` (a platform's back-off); never shortens an existing pause."""
        ...

    async def aclose(self) -> None: ...


class _Limits:
    def __init__(self, overrides: dict[str, Limit] | None = None) -> None:
        self._limits: dict[str, Limit] = {}
        self._overrides = dict(overrides or {})
        self._account_limits: dict[tuple[str, str], Limit] = {}
        """One entry per account whose limit differs from its network's (bounded by the accounts)."""

    def set_limit(self, network: str, limit: Limit) -> None:
        self._limits[network] = self._overrides.get(network, limit)

    def has_limit(self, network: str) -> bool:
        return network in self._limits

    def set_account_limit(self, network: str, account_id: str, limit: Limit) -> None:
        if limit == self._limits.get(network):
            self._account_limits.pop((network, account_id), None)
        else:
            self._account_limits[(network, account_id)] = limit

    def limit(self, network: str, account_id: str | None = None) -> Limit:
        override = self._overrides.get(network)
        if override is not None:
            return override
        if account_id is not None:
            own = self._account_limits.get((network, account_id))
            if own is not None:
                return own
        return self._limits.get(network) or UNLIMITED


class MemoryRateLimiter(_Limits):
    """In-process buckets. ``overrides`` replace what connectors declare (``{"loopback": UNLIMITED}``)."""

    def __init__(self, overrides: dict[str, Limit] | None = None) -> None:
        super().__init__(overrides)
        self._tat: dict[BucketKey, float] = {}
        self._paused: dict[BucketKey, float] = {}

    async def acquire(self, key: BucketKey) -> float:
        now = time.monotonic()
        paused = self._paused.get(key)
        if paused is not None:
            if paused > now:
                return paused - now
            del self._paused[key]
        limit = self.limit(key[0], key[1])
        if not limit.interval:
            return 0.0
        tat = max(self._tat.get(key, now), now)
        wait = tat - now - limit.tolerance
        if wait > 0:
            return wait
        self._tat[key] = tat + limit.interval
        if len(self._tat) > 100_000:  # forget buckets that are full again
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return 0.0

    async def pause(self, key: BucketKey, seconds: float) -> None:
        until = time.monotonic() + max(0.0, seconds)
        if until > self._paused.get(key, 0.0):
            self._paused[key] = until

    async def aclose(self) -> None:
        return None


# KEYS[1] bucket hash; ARGV: interval (s per send, 0 = unlimited), tolerance (s). Returns the wait as a
# string (Redis truncates Lua numbers to integers). Time is the Redis server's.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
if paused > now then return tostring(paused - now) end
local interval = tonumber(ARGV[1])
if interval <= 0 then return '0' end
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
if tat < now then tat = now end
local wait = tat - now - tonumber(ARGV[2])
if wait > 0 then return tostring(wait) end
redis.call('HSET', KEYS[1], 'tat', tostring(tat + interval))
local keep = math.max(tat + interval, paused) - now
redis.call('PEXPIRE', KEYS[1], math.ceil(keep * 1000) + 1000)
return '0'
"""

# KEYS[1] bucket hash; ARGV[1] seconds. Extends the pause, never shortens it.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
if untl > cur then redis.call('HSET', KEYS[1], 'paused', tostring(untl)) end
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local keep = math.max(untl, cur, tat) - now
redis.call('PEXPIRE', KEYS[1], math.ceil(keep * 1000) + 1000)
return 'ok'
"""


class RedisRateLimiter(_Limits):
    """Buckets in Redis, shared by every process using ``url``. Keys: ``{prefix}:{network}:{account}:{conv}``
    (each part length-prefixed, so ids containing ``:`` cannot collide), expiring once idle."""

    def __init__(
        self, url: str, *, prefix: str = "msgr:rl", overrides: dict[str, Limit] | None = None
    ) -> None:
        super().__init__(overrides)
        aioredis = import_extra("redis.asyncio", extra="redis", wanted_by='[rate_limit] backend = "redis"')
        self._client: Any = aioredis.from_url(url)
        self._prefix = prefix
        self._acquire = self._client.register_script(_ACQUIRE)
        self._pause = self._client.register_script(_PAUSE)

    def key(self, key: BucketKey) -> str:
        return self._prefix + ":" + ":".join(f"{len(p)}.{p}" for p in key)

    async def acquire(self, key: BucketKey) -> float:
        limit = self.limit(key[0], key[1])
        raw = await self._acquire(keys=[self.key(key)], args=[repr(limit.interval), repr(limit.tolerance)])
        wait = float(raw)
        return wait if wait > 0 and math.isfinite(wait) else 0.0

    async def pause(self, key: BucketKey, seconds: float) -> None:
        await self._pause(keys=[self.key(key)], args=[repr(max(0.0, float(seconds)))])

    async def aclose(self) -> None:
        await self._client.aclose()


def make_rate_limiter(redis_url: str = "", *, overrides: dict[str, Limit] | None = None) -> RateLimiter:
    """Redis-backed when ``redis_url`` is set (``[redis] url``), in memory otherwise."""
    if redis_url:
        return RedisRateLimiter(redis_url, overrides=overrides)
    return MemoryRateLimiter(overrides)
