"""The event bus: in-memory async publish/subscribe behind an interface.

Callers see only ``Bus`` and ``Subscription`` (two Protocols), so a NATS JetStream backend can replace
``MemoryBus`` later without touching them.

Topics are dot-separated, NATS-style: ``{tenant}.{network}.{kind}[.more]``, for example
``default.loopback.inbound``. Build them with ``topic()``, which refuses empty tokens, dots and wildcards
inside a token. Subscription patterns use NATS wildcards with NATS semantics: ``*`` matches exactly one
token, ``>`` (only as the last token) matches one or more remaining tokens. So ``default.*.inbound``
matches ``default.irc.inbound`` but not ``default.irc.inbound.x``, and ``default.>`` matches everything of
the ``default`` tenant but not ``default`` itself. A ``*`` or ``>`` inside a token (``foo*``) is refused
rather than silently taken literally.

Queues and backpressure. Every subscriber has its own bounded queue (``maxsize``) and an overflow policy:

* ``"block"`` (the default): a publisher waits in ``publish`` until the full subscriber takes a message.
  Use it for anything that must not lose messages (persistence, delivery). A slow subscriber slows its
  publishers; it never loses data. Never publish from a subscriber's own loop onto a topic it subscribes
  to with ``"block"``: a full queue would wait on itself.
* ``"drop_oldest"``: the oldest queued message is dropped to make room. Every drop is counted
  (``stats()``) and logged as a ``bus.subscriber_overflow`` warning naming the subscriber and the count
  (the first drop at once, then at most one summary every few seconds, and a last one when it closes).
  Use it for live views (websocket fan-out, typing indicators) where only the latest matters.

Ordering guarantee. Messages published by one task reach each subscriber in the order they were
published (FIFO per publisher, per subscriber), whatever wildcards match. Nothing is promised between two
concurrent publishers. The bridge keeps order per conversation by publishing each conversation's events
from one task (the inbound pipeline runs one task per account). ``key`` is the conversation id: this
backend does not need it, a partitioned backend (JetStream) uses it to keep one conversation in one
partition, so always pass it for conversation events.

Shutdown. ``drain(timeout)`` refuses new publishes (``BusClosed``), lets every subscriber finish what is
queued (their ``async for`` loops end by themselves once their queue is empty), then closes. Whatever is
still queued when the timeout expires is discarded, counted in the return value and logged.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, Protocol, Self

import anyio
import structlog

from .errors import BusClosed, BusError

__all__ = [
    "Bus",
    "Envelope",
    "MemoryBus",
    "Overflow",
    "SubscriberStats",
    "Subscription",
    "matches",
    "topic",
]

Overflow = Literal["block", "drop_oldest"]

OVERFLOW_LOG_INTERVAL_S = 5.0
"""After the first overflow warning, at most one summary warning per subscriber per this many seconds."""

_ROUTE_CACHE_MAX = 8192
_FORBIDDEN_IN_TOKEN = frozenset(".*> \t\r\n")

log = structlog.get_logger("msgr_bridge.bus")


class Envelope(NamedTuple):
    """What a subscriber receives: the concrete topic, the message, and the conversation key (or None).

    One envelope is made per publish and shared by every subscriber; treat it (and the message) as
    read-only. It unpacks: ``async for topic, message, key in sub``.
    """

    topic: str
    message: Any
    key: str | None


@dataclass(frozen=True, slots=True)
class SubscriberStats:
    """A snapshot of one subscriber's queue, for metrics and ``/health``."""

    name: str
    pattern: str
    maxsize: int
    overflow: Overflow
    queued: int
    delivered: int
    overflowed: int


class Subscription(Protocol):
    """One subscriber: an async iterator of ``Envelope`` and an async context manager that unsubscribes.

    ::

        async with bus.subscribe("default.*.inbound", name="persist") as sub:
            async for env in sub:
                await store(env.message)

    The loop ends when the subscription is closed (``aclose`` or the bus drained). A consumer that fans
    out to many clients can take several messages at once with ``receive_batch``.
    """

    @property
    def name(self) -> str: ...

    @property
    def pattern(self) -> str: ...

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> Envelope: ...

    async def receive_batch(self, limit: int = 256) -> list[Envelope]:
        """Wait for at least one message, then take up to ``limit`` at once; ``[]`` once closed."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def aclose(self) -> None:
        """Unsubscribe; whatever is still queued for this subscriber is discarded."""
        ...


class Bus(Protocol):
    """The bus interface every caller uses. ``MemoryBus`` implements it; a JetStream backend can too."""

    async def publish(self, topic: str, message: Any, *, key: str | None = None) -> None:
        """Deliver ``message`` to every subscriber whose pattern matches ``topic``.

        Waits while a matching ``"block"`` subscriber is full. Raises ``BusClosed`` once draining, and
        ``BusError`` for a malformed topic.
        """
        ...

    def subscribe(
        self,
        pattern: str,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "block",
        name: str | None = None,
    ) -> Subscription:
        """Start receiving messages published from now on to topics matching ``pattern``."""
        ...

    async def drain(self, timeout: float) -> int:
        """Stop accepting, let subscribers finish their queues, close. Returns messages left undelivered."""
        ...

    def stats(self) -> list[SubscriberStats]:
        """One snapshot per live subscriber."""
        ...


# --- topics -----------------------------------------------------------------------------------------------


def _bad(what: str, value: str, why: str) -> BusError:
    return BusError(
        f"invalid bus {what} {value!r}: {why}",
        hint="topics are dot-separated tokens like 'default.loopback.inbound'; build them with bus.topic()",
    )


def topic(tenant: str, network: str, kind: str, *rest: str) -> str:
    """Build a topic ``tenant.network.kind[.rest...]``, refusing tokens that would change its meaning.

    Each token must be a non-empty string without dots, whitespace or the wildcards ``*`` and ``>``.
    """
    tokens = (tenant, network, kind, *rest)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise _bad("topic token", str(token), "tokens must be non-empty strings")
        if not _FORBIDDEN_IN_TOKEN.isdisjoint(token):
            raise _bad("topic token", token, "a token may not contain '.', '*', '>' or whitespace")
    return ".".join(tokens)


def _topic_tokens(value: str) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise _bad("topic", str(value), "a topic is a string")
    tokens = tuple(value.split("."))
    if len(tokens) < 3:
        raise _bad("topic", value, "a topic has at least three tokens: tenant.network.kind")
    for token in tokens:
        if not token:
            raise _bad("topic", value, "empty token")
        if not _FORBIDDEN_IN_TOKEN.isdisjoint(token):
            raise _bad("topic", value, "wildcards and whitespace are only allowed in subscription patterns")
    return tokens


def _pattern_tokens(value: str) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise _bad("pattern", str(value), "a pattern is a string")
    tokens = tuple(value.split("."))
    for i, token in enumerate(tokens):
        if not token:
            raise _bad("pattern", value, "empty token")
        if token in ("*", ">"):
            if token == ">" and i != len(tokens) - 1:
                raise _bad("pattern", value, "'>' is only allowed as the last token")
            continue
        if not _FORBIDDEN_IN_TOKEN.isdisjoint(token):
            raise _bad("pattern", value, "'*' and '>' must be whole tokens; no whitespace")
    return tokens


def _match(pattern: tuple[str, ...], tokens: tuple[str, ...]) -> bool:
    n = len(tokens)
    for i, p in enumerate(pattern):
        if p == ">":
            return n > i
        if i >= n or (p != "*" and p != tokens[i]):
            return False
    return len(pattern) == n


def matches(pattern: str, topic: str) -> bool:
    """Whether ``pattern`` (with ``*``/``>`` wildcards) matches the concrete ``topic``, NATS semantics."""
    return _match(_pattern_tokens(pattern), _topic_tokens(topic))


# --- the in-memory backend --------------------------------------------------------------------------------


class _MemorySubscription:
    """A subscriber's queue: a deque plus two events (data ready for the consumer, space for publishers)."""

    __slots__ = (
        "_bus",
        "_busy",
        "_closed",
        "_data_ready",
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

    def finished(self) -> bool:
        return self._closed or (not self._queue and not self._busy)

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
        tokens = _topic_tokens(topic)
        subs = tuple(s for s in self._subs if _match(s.tokens, tokens))
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
        tokens = _pattern_tokens(pattern)
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
