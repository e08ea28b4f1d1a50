"""The outbox's operations for ``routes/outbox.py`` (``services.OutboxOps``): entries of this tenant, cancel,
retry and reschedule. A cancel or retry stores a ``delivery_status`` event whose ``state`` is the entry's
new state and wakes the event stream; a retry also wakes the delivery worker."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ..cli_outbox import cancel_entry, retry_entry
from ..outbound.scheduled import Scheduler
from ..outbound.statuses import StatusPublisher
from ..schema import DeliveryState
from ..store.repos.outbox import OutboxEntry, OutboxRepo, OutboxState

if TYPE_CHECKING:
    from ..bus import Bus
    from ..outbound.service import OutboundService
    from ..store.db import Database
    from ..store.repos.accounts import AccountRecord


class AccountGet(Protocol):
    async def get(self, account_id: str) -> AccountRecord | None: ...


class OutboxService:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        tenant: str,
        accounts: AccountGet,
        outbound: OutboundService | None,
    ) -> None:
        self._db, self._bus, self._tenant = db, bus, tenant
        self._accounts, self._outbound = accounts, outbound

    async def get(self, outbox_id: str) -> OutboxEntry | None:
        entry = await OutboxRepo(self._db).get(outbox_id)
        return entry if entry is not None and entry.tenant == self._tenant else None

    async def list(
        self, state: OutboxState | None, *, account_id: str | None, limit: int
    ) -> builtins.list[OutboxEntry]:
        return await OutboxRepo(self._db).list(
            state,
            tenant=self._tenant,
            account_id=account_id,
            limit=limit,
            by_due=state is OutboxState.SCHEDULED,
        )

    async def cancel(self, entry: OutboxEntry, *, actor: str) -> OutboxEntry:
        changed = await cancel_entry(self._db, entry.id, actor=actor)
        await self._published(changed, DeliveryState.CANCELLED)
        return changed

    async def retry(self, entry: OutboxEntry, *, actor: str) -> OutboxEntry:
        changed = await retry_entry(self._db, entry.id, actor=actor)
        await self._published(changed, DeliveryState.QUEUED)
        if self._outbound is not None and self._outbound.wake is not None:
            self._outbound.wake()
        return changed

    async def reschedule(
        self, entry: OutboxEntry, user: str | None, *, text: str | None, send_at: datetime | None
    ) -> OutboxEntry:
        if self._outbound is None:  # the route answers 503 before: the bridge is still starting
            raise RuntimeError("the outbound service is not running")
        return await Scheduler(self._outbound).reschedule(entry, user, text=text, send_at=send_at)

    async def _published(self, entry: OutboxEntry, state: DeliveryState) -> None:
        """Wake the event stream for the status just stored (the stream reads it from the event log)."""
        account = await self._accounts.get(entry.account_id)
        if account is not None:
            statuses = StatusPublisher(self._db, self._bus)
            await statuses.publish(entry.tenant, account.network, [statuses.status(entry, state)])
