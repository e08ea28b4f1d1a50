"""Receipts of our own messages (``MessageReceipt``): who received and who read each one.

One row per (message, recipient). A receipt only ever moves a row forward: ``delivered_at`` is set by the
first receipt of either kind (read implies delivered), ``read_at`` by the first read one; a repeated or
older receipt changes nothing, so replaying a batch leaves the same rows.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...schema import MessageReceipt, ReceiptState
from ..models import MessageReceiptRow, MessageRow
from ._base import Repository, dialect_insert, table

KEY = (MessageRow.network, MessageRow.conversation_id, MessageRow.remote_id, MessageRow.part)
PER_MESSAGE_MAX = 1000
"""The most receipts listed for one message (a large group's): the first ones received."""


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    target_exists: bool
    changed: bool
    outbox_id: str | None = None
    """The outbox entry that sent the message, when the bridge sent it."""


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    recipient_id: str
    recipient_name: str | None
    delivered_at: datetime
    read_at: datetime | None

    @property
    def state(self) -> ReceiptState:
        return ReceiptState.READ if self.read_at is not None else ReceiptState.DELIVERED


class ReceiptRepo(Repository):
    async def apply(self, session: AsyncSession, receipt: MessageReceipt) -> ReceiptOutcome:
        """Record one receipt. ``target_exists=False`` means the message is not stored (yet)."""
        key = (receipt.network, receipt.conversation_id, receipt.target_id, 0)
        row = (
            await session.execute(select(MessageRow.id, MessageRow.outbox_id).where(tuple_(*KEY) == key))
        ).first()
        if row is None:
            return ReceiptOutcome(target_exists=False, changed=False)
        message_id, outbox_id = row
        read = receipt.state is ReceiptState.READ
        tbl = table(MessageReceiptRow)
        inserted = dialect_insert(session, tbl).values(
            message_id=message_id,
            recipient_id=receipt.recipient.user_id,
            recipient_name=receipt.recipient.display_name,
            delivered_at=receipt.timestamp,
            read_at=receipt.timestamp if read else None,
        )
        inserted = inserted.on_conflict_do_nothing().returning(tbl.c.message_id)
        changed = (await session.execute(inserted)).first() is not None
        if not changed and read:
            moved = (
                update(tbl)
                .where(
                    tbl.c.message_id == message_id,
                    tbl.c.recipient_id == receipt.recipient.user_id,
                    tbl.c.read_at.is_(None),
                )
                .values(read_at=receipt.timestamp)
                .returning(tbl.c.message_id)
            )
            changed = (await session.execute(moved)).first() is not None
        return ReceiptOutcome(target_exists=True, changed=changed, outbox_id=outbox_id)

    async def for_messages(
        self, message_ids: Sequence[int], *, session: AsyncSession | None = None
    ) -> dict[int, builtins.list[StoredReceipt]]:
        """Message row id -> its receipts, in the order they were first received (at most
        ``PER_MESSAGE_MAX`` each)."""
        found: dict[int, list[StoredReceipt]] = defaultdict(list)
        if not message_ids:
            return found
        stmt = (
            select(MessageReceiptRow)
            .where(MessageReceiptRow.message_id.in_(message_ids))
            .order_by(MessageReceiptRow.message_id, MessageReceiptRow.delivered_at)
        )
        async with self._read(session) as s:
            for r in (await s.scalars(stmt)).all():
                if len(found[r.message_id]) < PER_MESSAGE_MAX:
                    found[r.message_id].append(
                        StoredReceipt(r.recipient_id, r.recipient_name, r.delivered_at, r.read_at)
                    )
        return found
