"""The bus interface callers program against: two Protocols and the two value types they hand out.

Kept apart from ``MemoryBus`` so a NATS JetStream backend can implement the same contract; the semantics
(wildcards, per-publisher ordering, overflow policies, drain) are described in ``msgr_bridge.bus``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, Protocol, Self

Overflow = Literal["block", "drop_oldest"]


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

    def hold(self) -> Callable[[], None]:
        """Keep ``drain`` waiting for this subscriber until the returned function is called (once is
        enough, more is harmless). Asking for the next message tells ``drain`` that the previous one is
        done; a consumer that asks before it is done (it works on one batch while taking the next) holds
        what it has not finished."""
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
