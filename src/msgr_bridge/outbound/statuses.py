"""Delivery statuses: every outbox transition is stored in the event log and published on the bus the same
way (``queued``, ``sent``, ``delivered``, ``read``, ``failed``), by ``StatusPublisher``."""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..bus import Bus, topic
from ..errors import BusClosed
from ..schema import DeliveryState, DeliveryStatus
from ..store.db import Database
from ..store.repos.event_log import EventLogRepo, NewEvent
from ..store.repos.outbox import OutboxEntry

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
        await self.events.append_many(
            s,
            [
                NewEvent(tenant, st.account_id, st.conversation_id, st.kind, st.model_dump(mode="json"))
                for st in statuses
            ],
        )

    async def publish(self, tenant: str, network: str, statuses: list[DeliveryStatus]) -> None:
        """Publish stored statuses; after shutdown began the bus refuses them, and subscribers find them
        in the event log when they resume."""
        subject = topic(tenant, network, "delivery")
        try:
            for st in statuses:
                await self.bus.publish(subject, st, key=st.conversation_id)
        except BusClosed:
            log.info("outbound.status_after_close", statuses=len(statuses))
