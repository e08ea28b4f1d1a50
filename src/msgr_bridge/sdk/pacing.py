"""Pacing a connection's sends so a long message always goes out.

A network that takes one line (or message) at a time and throttles a client that sends faster (IRC's flood
control) needs the client to pace itself: ``TokenBucket`` holds ``burst`` tokens, refilled at ``rate`` per
second. ``SendPacer`` sends a message's parts through it, in order, over one connection shared by every
conversation of the account.

**Why the pacer waits instead of raising ``RateLimited`` for the whole message.** A message of more parts
than the bucket's burst can never find enough tokens at once: asking the delivery worker to retry it "when
the tokens are there" never succeeds, and the message blocks its conversation for good (the IRC case of
issue #10 item 3). The pacer instead takes every wait it can simply take: it sends part after part as the
tokens come, and a part's wait is at most ``1 / rate`` once its turn has come, so every call makes progress.

The one bound is the time one call may take (``max_wait``, kept below the delivery worker's send timeout):
when the remaining parts would go past it, the pacer stops after the parts it sent (always at least one),
remembers how far it got under the send's key (its transaction id), and raises ``RateLimited`` with the
wait for the next token. That retry succeeds: the delivery worker calls again with the same key and parts,
and the pacer resumes after the last part sent, so nothing is sent twice and every call moves the message
on (its error text names the progress, so no two are the same). Progress is kept in memory for the last
``remember`` sends (a restart resends the message from its first part, as for any send found in flight).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import RateLimited

Clock = Callable[[], float]


class TokenBucket:
    """``rate`` tokens per second sustained, ``burst`` at once. ``reserve(n)`` books ``n`` tokens and
    returns how long to wait before the last of them is due; ``delay_for(n)`` only asks."""

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay_for(self, count: int) -> float:
        self._refill()
        return max(0.0, (count - self._tokens) / self.rate)

    def reserve(self, count: int) -> float:
        delay = self.delay_for(count)
        self._tokens -= count
        return delay


@dataclass
class _Progress:
    fingerprint: str
    results: list[Any] = field(default_factory=list)


class SendPacer:
    """Sends the parts of messages over one connection, paced by one ``TokenBucket`` (module docstring)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_wait: float,
        remember: int = 256,
        clock: Clock = time.monotonic,
    ) -> None:
        self.bucket = TokenBucket(rate, burst, clock=clock)
        self.max_wait = max(max_wait, 1.0 / rate)
        """Seconds one ``send_parts`` call may wait for tokens; at least one token's time."""
        self._clock = clock
        self._lock = asyncio.Lock()
        self._progress: OrderedDict[str, _Progress] = OrderedDict()
        self._remember = remember

    async def one[R](self, send: Callable[[], Awaitable[R]]) -> R:
        """One paced send (a command outside any message), however long its turn takes."""
        async with self._lock:
            delay = self.bucket.reserve(1)
            if delay > 0:
                await asyncio.sleep(delay)
            return await send()

    async def send_parts[P, R](
        self, key: str, parts: Sequence[P], send: Callable[[int, P], Awaitable[R]]
    ) -> list[R]:
        """``send(index, part)`` for every part in order, paced; one result per part. Raises
        ``RateLimited`` after at least one part when the rest would wait past ``max_wait``; calling again
        with the same ``key`` and parts resumes after the parts already sent."""
        fingerprint = hashlib.sha256(repr(list(parts)).encode("utf-8", "surrogatepass")).hexdigest()
        progress = self._progress.pop(key, None)
        if progress is None or progress.fingerprint != fingerprint:
            progress = _Progress(fingerprint)
        deadline = self._clock() + self.max_wait
        sent_now = 0
        try:
            for index in range(len(progress.results), len(parts)):
                async with self._lock:
                    delay = self.bucket.delay_for(1)
                    if sent_now and self._clock() + delay > deadline:
                        raise RateLimited(
                            delay,
                            f"{len(progress.results)} of {len(parts)} parts sent; the rest follows as the "
                            "network's flood control allows",
                        )
                    self.bucket.reserve(1)
                    if delay > 0:
                        await asyncio.sleep(delay)
                    progress.results.append(await send(index, parts[index]))
                    sent_now += 1
        except BaseException:
            if progress.results:
                self._keep(key, progress)
            raise
        return progress.results

    def _keep(self, key: str, progress: _Progress) -> None:
        self._progress[key] = progress
        while len(self._progress) > self._remember:
            self._progress.popitem(last=False)

    @property
    def unfinished(self) -> int:
        """Sends remembered part-way (bounded by ``remember``)."""
        return len(self._progress)
