"""Notify: publish what was stored (with its event-log position) for API subscribers and relay routes.

Topics: ``{tenant}.{network}.stored`` for persisted events (each carries ``seq``, the resume cursor of the
event stream), ``{tenant}.{network}.ephemeral`` for typing notifications (and import progress, published
by ``sync.progress``), which are never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from ..bus import Bus, topic
from ..errors import BusClosed
from ..observability.tracing import Carrier
from ..schema import Event
from ..store.repos.event_log import LoggedEvent
from .records import Stored

log = structlog.get_logger("msgr_bridge.inbound")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What subscribers of ``*.stored`` receive."""

    seq: int
    tenant: str
    event: Event
    outcome: str
    trace: Carrier | None = None
    """The trace of the payload the event came from (while tracing is on)."""
    logged: LoggedEvent | None = None
    """Its event-log entry as written: the event stream sends it without reading the log back."""


class BusNotifier:
    """Publishes after the commit. During shutdown the bus refuses new messages (``BusClosed``): what was
    stored is in the event log, where subscribers resume from their cursor, so nothing is lost."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def notify(self, tenant: str, stored: Sequence[Stored], ephemeral: Sequence[Event]) -> None:
        try:
            await self._publish(tenant, stored, ephemeral)
        except BusClosed:
            log.info("inbound.notify_after_close", stored=len(stored), ephemeral=len(ephemeral))

    async def _publish(self, tenant: str, stored: Sequence[Stored], ephemeral: Sequence[Event]) -> None:
        for s in stored:
            if s.seq is None:
                continue
            e = s.event
            await self.bus.publish(
                topic(tenant, e.network, "stored"),
                StoredEvent(s.seq, tenant, e, s.outcome, s.trace, s.logged),
                key=e.conversation_id,
            )
        for e in ephemeral:
            await self.bus.publish(topic(tenant, e.network, "ephemeral"), e, key=e.conversation_id)
