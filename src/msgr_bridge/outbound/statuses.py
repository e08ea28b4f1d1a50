"""Delivery statuses: every outbox transition is stored in the event log and published on the bus the same
way (``queued``, ``sent``, ``delivered``, ``read``, ``failed``), by ``StatusPublisher``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from ..bus import Bus, topic
from ..errors import BusClosed
from ..schema import DeliveryState, DeliveryStatus
from ..store.db import Database
from ..store.repos._base import in_session
from ..store.repos.event_log import EventLogRepo, NewEvent, append_many_in, logged_entries
from ..store.repos.outbox import OutboxEntry
from ..store.types import utcnow

log = structlog.get_logger("msgr_bridge.outbound")


class StatusPublisher:
    """Stores (event log) and publishes (bus) delivery statuses: one place, so every transition goes
    through both the same way."""

    def __init__(self, db: Database, bus: Bus) -> None:
        self.bus = bus
        self.events = EventLogRepo(db)

    @staticmethod
    def status(entry: OutboxEntry, state: DeliveryState, reason: str | None = None) -> DeliveryStatus:
        return DeliveryStatus(
            outbox_id=entry.id,
            account_id=entry.account_id,
            conversation_id=entry.conversation_id,
            state=state,
            remote_id=entry.remote_id,
            reason=reason,
        )

    async def store(self, s: AsyncSession, tenant: str, statuses: list[DeliveryStatus]) -> None:
        """Append to the event log in ``s``; each status then carries its entry (``logged``)."""
        await in_session(s, lambda conn: self.store_in(conn, tenant, statuses))

    @staticmethod
    def store_in(conn: Connection, tenant: str, statuses: Sequence[DeliveryStatus]) -> None:
        """``store`` in a synchronous connection's transaction (``Database.transact``)."""
        now = utcnow()
        entries = new_events(tenant, statuses)
        logged(statuses, entries, append_many_in(conn, entries, now), now)

    async def publish(self, tenant: str, network: str, statuses: list[DeliveryStatus]) -> None:
        """Publish stored statuses; after shutdown began the bus refuses them, and subscribers find them
        in the event log when they resume."""
        subject = topic(tenant, network, "delivery")
        try:
            for st in statuses:
                await self.bus.publish(subject, st, key=st.conversation_id)
        except BusClosed:
            log.info("outbound.status_after_close", statuses=len(statuses))


def new_events(tenant: str, statuses: Sequence[DeliveryStatus]) -> list[NewEvent]:
    return [
        NewEvent(tenant, st.account_id, st.conversation_id, st.kind, st.model_dump(mode="json"))
        for st in statuses
    ]


def logged(
    statuses: Sequence[DeliveryStatus], entries: Sequence[NewEvent], seqs: Sequence[int], now: datetime
) -> None:
    """Hand each status its event-log entry as written (``DeliveryStatus.logged``)."""
    for st, entry in zip(statuses, logged_entries(entries, seqs, now), strict=True):
        st._logged = entry
