"""The inbound pipeline's two stages and the one slot between them: the next batch is prepared (normalized,
deduplicated) while the current one commits.

``InboundPipeline.run`` runs a receiver and a committer. The receiver takes payloads off the bus and
prepares them into ``Handoff.next`` (``PreparedBatch``); the committer takes that batch whenever it is free
and persists, acknowledges and announces it. While a commit waits on the database, the receiver keeps
adding what arrives to the same next batch, up to ``max_batch`` payloads, then stops taking from the bus
(whose bounded queue then makes connectors wait on ``sink.push``, as before). So at most two batches are
out of the bus: one committing, one being prepared; and the batch a commit takes is as large as what
arrived during the previous commit, as it was when the loop took it from the bus itself.

What the split keeps: batches commit one after the other, in the order their payloads arrived, and a batch's
acks and notifications follow its own commit, so ``N`` is committed and published before ``N + 1``. A
payload is prepared only once it left the bus and is never acknowledged before it is committed; the bus's
``drain`` (shutdown) waits for both batches (``Subscription.hold``), as it waited for the one a sequential
loop had in hand. The dedupe cache is only a shortcut: a payload prepared while an earlier batch with the
same message was still committing misses the cache and reaches the database after that commit, whose
unique keys report it as the duplicate it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from ..schema import Event
from .normalize import Quarantined
from .sink import RawInbound


@dataclass(eq=False)
class PreparedBatch:
    """Payloads taken off the bus and normalized, waiting to be committed together."""

    items: list[RawInbound] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    """What to persist, in arrival order (duplicates the cache knew already left out)."""
    quarantined: list[Quarantined] = field(default_factory=list)
    ephemeral: list[Event] = field(default_factory=list)
    """Typing notifications: announced after the commit, never stored."""
    origin: dict[int, RawInbound] = field(default_factory=dict)
    """Event (by ``id``) -> the raw payload it came from: a refused event is quarantined with its raw
    payload, which a fixed connector can convert again."""
    prepare_s: float = 0.0
    """Seconds spent preparing it (the ``normalize`` stage)."""
    started_ns: int = 0
    """When its preparation began (``time.time_ns``, while tracing is on)."""
    release: Callable[[], None] | None = None
    """Lets the bus's ``drain`` end once this batch is committed (``Subscription.hold``)."""


class Handoff:
    """The slot between receiver and committer: one ``PreparedBatch`` that grows until it is taken."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.next: PreparedBatch | None = None
        self.closed = False
        self._ready = anyio.Event()
        """Set when ``next`` holds payloads, or the receiver has ended."""
        self._taken = anyio.Event()

    def room(self) -> int:
        """How many more payloads the next batch can take."""
        return self.max_items - (len(self.next.items) if self.next is not None else 0)

    def filling(self) -> PreparedBatch:
        """The next batch, to add payloads to (without awaiting in between), then ``offer``."""
        if self.next is None:
            self.next = PreparedBatch()
        return self.next

    def offer(self) -> None:
        self._ready.set()

    async def wait_for_room(self) -> None:
        """Wait until the committer took the next batch, if it is full."""
        while self.room() <= 0:
            await self._taken.wait()

    async def take(self) -> PreparedBatch | None:
        """The next batch once there is one; None when the receiver has ended and nothing is left."""
        while self.next is None:
            if self.closed:
                return None
            await self._ready.wait()
            self._ready = anyio.Event()
        batch, self.next = self.next, None
        self._taken.set()
        self._taken = anyio.Event()
        return batch

    def close(self) -> None:
        """The receiver has ended: the committer commits what is left, then ``take`` answers None."""
        self.closed = True
        self._ready.set()
