"""``MessageIds`` from the database: remote id to canonical message and back, for one account.

A lookup joins ``message_accounts``, so an account sees only messages it saw or sent itself, and only on
its own network. Read-only: nothing here writes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, tuple_

from ...sdk.message_ids import MessageRef
from ..db import Database
from ..models import MessageAccount, MessageRow
from .message_records import KEY_COLUMNS


def _ref(row: MessageRow) -> MessageRef:
    return MessageRef(
        message_id=row.id,
        conversation_id=row.conversation_id,
        remote_id=row.remote_id,
        part=row.part,
        sender_id=row.sender_id,
        txn_id=row.txn_id,
        reply_to=row.reply_to,
        thread_id=row.thread_id,
        deleted=row.deleted_at is not None,
    )


class AccountMessageIds:
    """What a connector's context gets as ``messages``."""

    def __init__(self, db: Database, account_id: str, network: str) -> None:
        self.db, self.account_id, self.network = db, account_id, network

    async def _one(self, *where: Any) -> MessageRef | None:
        stmt = (
            select(MessageRow)
            .join(MessageAccount, MessageAccount.message_id == MessageRow.id)
            .where(MessageAccount.account_id == self.account_id, MessageRow.network == self.network, *where)
            .limit(1)
        )
        async with self.db.read() as s:
            row = (await s.scalars(stmt)).first()
            return _ref(row) if row is not None else None

    async def by_remote(self, conversation_id: str, remote_id: str, part: int = 0) -> MessageRef | None:
        return await self._one(tuple_(*KEY_COLUMNS) == (self.network, conversation_id, remote_id, part))

    async def by_id(self, message_id: int) -> MessageRef | None:
        return await self._one(MessageRow.id == message_id)

    async def by_txn(self, txn_id: str) -> MessageRef | None:
        return await self._one(MessageRow.txn_id == txn_id)
