"""Scheduled sends: a send with ``send_at`` waits in the outbox as ``scheduled`` until its time.

It is accepted like any send (impersonation, capabilities and policy run when it is submitted, and the row
is written with its audit records and a ``scheduled`` delivery status), so it is durable from the moment
the API answers: a restart or a crash loses nothing, and one that was due while the bridge was down goes
out when it is back. Until its time it can be listed (``OutboxRepo.list(OutboxState.SCHEDULED)``),
changed (``Scheduler.reschedule``: its text and/or its time; a new text is checked against capabilities and
policy again, as a new send would be) and cancelled (``cancel``). At its time the delivery worker queues it
(``promote_due``: ``scheduled`` -> ``queued``, with a ``queued`` status); from then on it is delivered like
every other entry: rate limits, ordering per conversation, retries and delivery statuses.

``send_at`` must be in the future and at most ``MAX_AHEAD`` away (``check_send_at``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import update

from ..errors import BridgeError, OutboundRejected, PolicyDenied
from ..schema import DeliveryState
from ..store import audit
from ..store.db import Database
from ..store.models import OutboxRow
from ..store.repos.outbox import OutboxEntry, OutboxRepo, OutboxState, entry_from_row
from ..store.types import utcnow
from .policy import PolicyRequest
from .requests import OutboundRequest
from .statuses import StatusPublisher

if TYPE_CHECKING:
    from .service import OutboundService

MAX_AHEAD = timedelta(days=365)
"""How far ahead a send may be scheduled."""


class NotScheduled(BridgeError):
    """The entry is not (or no longer) scheduled: it went out, failed or was cancelled."""

    code = "not_scheduled"


def check_send_at(send_at: datetime, now: datetime | None = None) -> datetime:
    """``send_at`` if it is in the future and within ``MAX_AHEAD``; else ``OutboundRejected`` saying why."""
    now = now or utcnow()
    if send_at <= now:
        raise OutboundRejected(
            f"send_at {send_at.isoformat()} is not in the future (now is {now.isoformat()})",
            hint="leave send_at out to send now",
        )
    if send_at > now + MAX_AHEAD:
        raise OutboundRejected(
            f"send_at {send_at.isoformat()} is more than {MAX_AHEAD.days} days ahead",
            hint="schedule at most a year ahead",
        )
    return send_at


async def promote_due(
    db: Database, statuses: StatusPublisher, now: datetime | None = None
) -> list[OutboxEntry]:
    """Queue the scheduled entries whose time has come, storing a ``queued`` status for each in the same
    transaction; returns them (the caller publishes). ``ix_outbox_due`` answers the lookup."""
    now = now or utcnow()
    async with db.session() as s:
        stmt = (
            update(OutboxRow)
            .where(OutboxRow.state == OutboxState.SCHEDULED.value, OutboxRow.next_attempt_at <= now)
            .values(state=OutboxState.QUEUED.value, updated_at=now)
            .returning(*OutboxRow.__table__.c)
        )
        entries = [entry_from_row(row) for row in (await s.execute(stmt)).all()]
        by_tenant: dict[str, list[OutboxEntry]] = {}
        for e in entries:
            by_tenant.setdefault(e.tenant, []).append(e)
        for tenant, mine in by_tenant.items():
            await statuses.store(
                s, tenant, [statuses.status(e, DeliveryState.QUEUED, "its time came") for e in mine]
            )
    return entries


class Scheduler:
    """Changes to scheduled sends on behalf of a user (the API's ``PATCH /v1/outbox/{id}``)."""

    def __init__(self, service: OutboundService) -> None:
        self.service = service
        self.db = service.db
        self.outbox = OutboxRepo(service.db)

    async def reschedule(
        self,
        entry: OutboxEntry,
        user: str | None,
        *,
        text: str | None = None,
        send_at: datetime | None = None,
    ) -> OutboxEntry:
        """A new text and/or time for a scheduled send. The new text is checked as a send's would be
        (capabilities; policy: a denial or hold refuses the change, a redaction is stored redacted)."""
        if entry.state is not OutboxState.SCHEDULED:
            raise NotScheduled(
                f"outbox entry {entry.id} is {entry.state.value}; only a scheduled send can be changed",
                hint="a send that went out can be edited as a message instead",
            )
        if send_at is not None:
            check_send_at(send_at)
        # the user must still be one who may speak through the account (ImpersonationDenied otherwise)
        speaker = await self.service.impersonation.resolve(entry.tenant, user, entry.account_id)
        payload = None
        if text is not None:
            request = OutboundRequest.from_entry(entry).model_copy(update={"text": text, "user": user})
            request = OutboundRequest.model_validate(request.model_dump())  # a send still needs content
            await self.service._check(request, speaker)
            outcome = await self.service.policy.evaluate(
                PolicyRequest(
                    tenant=request.tenant,
                    user=user or f"tenant:{request.tenant}",
                    account_id=request.account_id,
                    network=speaker.account.network,
                    conversation_id=request.conversation_id,
                    message=request.message(entry.txn_id),
                )
            )
            if not outcome.allowed:  # a denial or a hold: the scheduled send keeps its earlier text
                d = outcome.deciding
                raise PolicyDenied(outcome.reason, rule=d.rule if d else None)
            m = outcome.request.message
            stored = request.model_copy(update={"text": m.text, "formatted": m.formatted})
            payload = stored.payload()
        async with self.db.session() as s:
            changed = await self.outbox.reschedule(entry.id, payload=payload, send_at=send_at, session=s)
            if changed is None:
                raise NotScheduled(
                    f"outbox entry {entry.id} is no longer scheduled",
                    hint="GET /v1/outbox/{outbox_id} says what it is",
                )
            status = self.service.statuses.status(changed, DeliveryState.SCHEDULED, "changed")
            await self.service.statuses.store(s, changed.tenant, [status])
            actor = f"user:{user}" if user else f"tenant:{changed.tenant}"
            details = {"changed": [k for k, v in (("text", text), ("send_at", send_at)) if v is not None]}
            await audit.append(s, actor, "message.reschedule", f"outbox:{changed.id}", details)
        if send_at is not None and self.service.wake is not None:  # the worker waits for its new time
            self.service.wake(changed.next_attempt_at, scheduled=True)
        account = await self.service.impersonation.account(changed.account_id)
        if account is not None:
            await self.service.statuses.publish(changed.tenant, account.network, [status])
        return changed
