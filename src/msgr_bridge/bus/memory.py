"""``MemoryBus``: the in-process ``Bus`` backend (one event loop, bounded per-subscriber queues).

Queues, overflow policies and ``drain`` are described in ``msgr_bridge.bus``; this module is their
implementation and the only part of the package with state.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import anyio
import structlog

from ..errors import BusClosed, BusError
from .protocol import Envelope, Overflow, SubscriberStats
from .topics import match_tokens, pattern_tokens, topic_tokens

OVERFLOW_LOG_INTERVAL_S = 5.0
"""After the first overflow warning, at most one summary warning per subscriber per this many seconds."""

_ROUTE_CACHE_MAX = 8192

log = structlog.get_logger("msgr_bridge.bus")


class _MemorySubscription:
    """A subscriber's queue: a deque plus two events (data ready for the consumer, space for publishers)."""

    __slots__ = (
        "_bus",
        "_busy",
        "_closed",
        "_data_ready",
        "_holds",
        "_last_warning",
        "_name",
        "_pattern",
        "_queue",
        "_space_free",
        "_unreported",
        "delivered",
        "drop_oldest",
        "maxsize",
        "overflowed",
        "tokens",
    )

    def __init__(
        self,
        bus: MemoryBus,
        pattern: str,
        tokens: tuple[str, ...],
        maxsize: int,
        overflow: Overflow,
        name: str,
    ) -> None:
        self._bus = bus
        self._pattern = pattern
        self._name = name
        self.tokens = tokens
        self.maxsize = maxsize
        self.drop_oldest = overflow == "drop_oldest"
        self._queue: deque[Envelope] = deque()
        self._data_ready: anyio.Event | None = None
        self._space_free: anyio.Event | None = None
        self._closed = False
        self._busy = False  # the consumer holds an item and has not asked for the next one yet
        self._holds = 0  # what the consumer still works on after asking for more (``hold``)
        self.delivered = 0
        self.overflowed = 0
        self._unreported = 0
        self._last_warning = -OVERFLOW_LOG_INTERVAL_S

    @property
    def name(self) -> str:
        return self._name

    @property
    def pattern(self) -> str:
        return self._pattern

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Envelope:
        queue = self._queue
        if not queue or self._closed:
            self._busy = False
            await self._wait_for_data()
        item = queue.popleft()
        self.delivered += 1
        self._busy = True
        if self._space_free is not None:
            self._space_free.set()
            self._space_free = None
        return item

    async def _wait_for_data(self) -> None:
        queue = self._queue
        while not queue:
            if self._closed:
                raise StopAsyncIteration
            self._bus._progress()
            event = self._data_ready = anyio.Event()
            await event.wait()
        if self._closed:
            raise StopAsyncIteration

    async def receive_batch(self, limit: int = 256) -> list[Envelope]:
        """Wait for at least one message, then take up to ``limit`` at once; ``[]`` once closed.

        Cheaper than one ``__anext__`` per message for consumers that fan out to many clients.
        """
        queue = self._queue
        self._busy = False
        if not queue or self._closed:
            try:
                await self._wait_for_data()
            except StopAsyncIteration:
                return []
        n = min(limit, len(queue))
        batch = [queue.popleft() for _ in range(n)]
        self.delivered += n
        self._busy = True
        if self._space_free is not None:
            self._space_free.set()
            self._space_free = None
        return batch

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    async def aclose(self) -> None:
        self._close()

    def hold(self) -> Callable[[], None]:
        self._holds += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._holds -= 1
                self._bus._progress()

        return release

    def finished(self) -> bool:
        return self._closed or (not self._queue and not self._busy and not self._holds)

    def overflow(self) -> None:
        self._queue.popleft()
        self.overflowed += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._last_warning >= OVERFLOW_LOG_INTERVAL_S:
            self._warn_overflow()
            self._last_warning = now

    def _warn_overflow(self) -> None:
        log.warning(
            "bus.subscriber_overflow",
            subscriber=self._name,
            pattern=self._pattern,
            dropped=self._unreported,
            overflowed=self.overflowed,
            maxsize=self.maxsize,
        )
        self._unreported = 0

    def stats(self) -> SubscriberStats:
        return SubscriberStats(
            name=self._name,
            pattern=self._pattern,
            maxsize=self.maxsize,
            overflow="drop_oldest" if self.drop_oldest else "block",
            queued=len(self._queue),
            delivered=self.delivered,
            overflowed=self.overflowed,
        )

    def _close(self) -> int:
        """Close and discard the queue; returns how many messages were discarded."""
        if self._closed:
            return 0
        self._closed = True
        discarded = len(self._queue)
        self._queue.clear()
        if self._unreported:
            self._warn_overflow()
        for event in (self._data_ready, self._space_free):
            if event is not None:
                event.set()
        self._data_ready = self._space_free = None
        self._bus._unsubscribe(self)
        return discarded


class MemoryBus:
    """The in-process ``Bus``: one event loop, no persistence, no outside service.

    Publishing costs one dictionary lookup (the subscribers matching each concrete topic are cached), one
    envelope, and one ``deque.append`` per matching subscriber; it does not yield to the event loop unless
    it has to wait for a full ``"block"`` subscriber.
    """

    def __init__(self) -> None:
        self._subs: list[_MemorySubscription] = []
        self._routes: dict[str, tuple[_MemorySubscription, ...]] = {}
        self._accepting = True
        self._waiting_publishers = 0
        self._drain_wakeup: anyio.Event | None = None
        self._counter = 0
        self.published = 0
        """Messages accepted by ``publish`` that matched at least one subscriber."""

    async def publish(self, topic: str, message: Any, *, key: str | None = None) -> None:
        if not self._accepting:
            raise BusClosed(
                f"the bus is draining; not publishing to {topic!r}",
                hint="the bridge is shutting down; this message is retried on the next start",
            )
        subs = self._routes.get(topic)
        if subs is None:
            subs = self._route(topic)
        if not subs:
            return
        envelope = Envelope(topic, message, key)
        self.published += 1
        for sub in subs:
            queue = sub._queue
            if len(queue) >= sub.maxsize:
                if sub.drop_oldest:
                    sub.overflow()
                else:
                    await self._wait_for_space(sub)
                    if sub._closed:
                        continue
            queue.append(envelope)
            ready = sub._data_ready
            if ready is not None:
                sub._data_ready = None
                ready.set()

    async def _wait_for_space(self, sub: _MemorySubscription) -> None:
        self._waiting_publishers += 1
        try:
            while len(sub._queue) >= sub.maxsize and not sub._closed:
                space = sub._space_free
                if space is None:
                    space = sub._space_free = anyio.Event()
                await space.wait()
        finally:
            self._waiting_publishers -= 1
            self._progress()

    def _route(self, topic: str) -> tuple[_MemorySubscription, ...]:
        tokens = topic_tokens(topic)
        subs = tuple(s for s in self._subs if match_tokens(s.tokens, tokens))
        if len(self._routes) >= _ROUTE_CACHE_MAX:
            self._routes.clear()
        self._routes[topic] = subs
        return subs

    def subscribe(
        self,
        pattern: str,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "block",
        name: str | None = None,
    ) -> _MemorySubscription:
        if not self._accepting:
            raise BusClosed(f"the bus is draining; cannot subscribe to {pattern!r}")
        tokens = pattern_tokens(pattern)
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise BusError(f"subscriber maxsize must be a positive integer, not {maxsize!r}")
        if overflow not in ("block", "drop_oldest"):
            raise BusError(f"subscriber overflow must be 'block' or 'drop_oldest', not {overflow!r}")
        self._counter += 1
        sub = _MemorySubscription(
            self, pattern, tokens, maxsize, overflow, name or f"{pattern}#{self._counter}"
        )
        self._subs.append(sub)
        self._routes.clear()
        return sub

    def _unsubscribe(self, sub: _MemorySubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._routes.clear()
        self._progress()

    def _progress(self) -> None:
        """Wake ``drain`` to re-check whether everyone is done (called when a consumer idles or closes)."""
        wakeup = self._drain_wakeup
        if wakeup is not None:
            self._drain_wakeup = None
            wakeup.set()

    def _finished(self) -> bool:
        return self._waiting_publishers == 0 and all(s.finished() for s in self._subs)

    async def drain(self, timeout: float) -> int:
        self._accepting = False
        with anyio.move_on_after(timeout):
            while not self._finished():
                wakeup = self._drain_wakeup = anyio.Event()
                await wakeup.wait()
        left = 0
        for sub in list(self._subs):
            discarded = sub._close()
            if discarded:
                log.warning(
                    "bus.drain_discarded",
                    subscriber=sub.name,
                    pattern=sub.pattern,
                    discarded=discarded,
                    timeout_s=timeout,
                )
            left += discarded
        return left

    @property
    def accepting(self) -> bool:
        """False once ``drain`` has started."""
        return self._accepting

    def stats(self) -> list[SubscriberStats]:
        return [s.stats() for s in self._subs]
