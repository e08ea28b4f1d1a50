"""What the inbound pipeline's stages report: what persisting one event did (``Stored``), the store and
notifier it drives (``InboundStore``, ``Notifier``, implemented in ``persist`` and ``notify``), and its
counters (``InboundStats``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..observability import tracing
from ..schema import Event
from ..store.repos.event_log import LoggedEvent
from .normalize import Quarantined

Outcome = Literal["created", "linked", "duplicate", "applied", "stale", "missing_target"]


@dataclass(frozen=True, slots=True)
class Stored:
    """What persisting one event did. ``seq`` is its event-log position when it was recorded."""

    event: Event
    outcome: Outcome
    seq: int | None = None
    trace: tracing.Carrier | None = None
    """The trace of the payload it came from (while tracing is on), carried on to ``*.stored``."""
    logged: LoggedEvent | None = None
    """Its event-log entry as written (``seq`` set): the event stream fans it out without reading it back."""


class InboundStore(Protocol):
    """Persistence of one batch in one transaction (implemented in ``persist``)."""

    async def persist(
        self, tenant: str, events: Sequence[Event], quarantined: Sequence[Quarantined]
    ) -> list[Stored]: ...

    async def reachable(self) -> bool:
        """Whether the database answers a trivial query (an outage, as opposed to a refused batch)."""
        ...


class Notifier(Protocol):
    async def notify(self, tenant: str, stored: Sequence[Stored], ephemeral: Sequence[Event]) -> None:
        """Announce what a batch stored; entries without ``seq`` (duplicates, stale changes) are skipped."""
        ...


@dataclass
class InboundStats:
    received: int = 0
    events: int = 0
    created: int = 0
    linked: int = 0
    duplicates: int = 0
    applied: int = 0
    stale: int = 0
    held: int = 0
    quarantined: int = 0
    refused: int = 0
    """Events the database refused (quarantined with its reason; counted in ``quarantined`` too)."""
    batches: int = 0
    persist_retries: int = 0
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    """Receipt-to-notification latency of live messages (kept only when ``record_latency`` is on)."""
