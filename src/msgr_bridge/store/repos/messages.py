"""Canonical messages: batched, deduplicated inserts; echo matching; edits, deletes and history.

The database constraint is the truth for dedupe: a message's key is (network, conversation, remote id, part),
and ``message_accounts`` is unique per (account, message). ``insert_batch`` therefore tells, per message,
whether it was new and whether this account had already seen it, from what the constraints let through:
no read-before-write race, and the same answer after a crash and a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...schema import Delete, Edit, Message
from ..models import BridgeAccount, MessageAccount, MessageRow, OutboxRow
from . import message_inserts
from ._base import Repository
from .message_records import (
    KEY_COLUMNS,
    LINKS,
    MESSAGES,
    ChangeOutcome,
    InsertOutcome,
    Key,
    StoredMessage,
    TxnMatch,
    key_of,
    stored,
)

__all__ = [
    "KEY_COLUMNS",
    "LINKS",
    "MESSAGES",
    "ChangeOutcome",
    "InsertOutcome",
    "Key",
    "MessageRepo",
    "StoredMessage",
    "TxnMatch",
    "key_of",
    "stored",
]


class MessageRepo(Repository):
    async def insert_batch(self, session: AsyncSession, messages: Sequence[Message]) -> list[InsertOutcome]:
        """Store a batch in the caller's transaction; one outcome per input message, in input order.

        A few statements whatever the batch size; ``message_inserts.insert_batch`` says which, and how
        PostgreSQL and SQLite learn the ids of duplicates.
        """
        return await message_inserts.insert_batch(session, messages)

    async def match_txn(self, txn_id: str, *, session: AsyncSession | None = None) -> TxnMatch | None:
        """Is ``txn_id`` one of our outbound transaction ids? Then the message is an echo of our own send."""
        async with self._read(session) as s:
            outbox = (
                await s.execute(
                    select(OutboxRow.id, OutboxRow.state, OutboxRow.remote_id).where(
                        OutboxRow.txn_id == txn_id
                    )
                )
            ).one_or_none()
            message_id = await s.scalar(select(MessageRow.id).where(MessageRow.txn_id == txn_id))
        if outbox is None and message_id is None:
            return None
        return TxnMatch(
            txn_id=txn_id,
            outbox_id=outbox.id if outbox else None,
            outbox_state=outbox.state if outbox else None,
            remote_id=outbox.remote_id if outbox else None,
            message_id=message_id,
        )

    async def get(self, message_id: int, *, session: AsyncSession | None = None) -> StoredMessage | None:
        async with self._read(session) as s:
            row = await s.get(MessageRow, message_id)
            return stored(row) if row is not None else None

    async def get_by_remote(
        self,
        network: str,
        conversation_id: str,
        remote_id: str,
        part: int = 0,
        *,
        session: AsyncSession | None = None,
    ) -> StoredMessage | None:
        stmt = select(MessageRow).where(tuple_(*KEY_COLUMNS) == (network, conversation_id, remote_id, part))
        async with self._read(session) as s:
            row = (await s.scalars(stmt)).one_or_none()
            return stored(row) if row is not None else None

    async def accounts_for(self, message_id: int, *, session: AsyncSession | None = None) -> list[str]:
        """The linked accounts that saw this message."""
        stmt = (
            select(MessageAccount.account_id)
            .where(MessageAccount.message_id == message_id)
            .order_by(MessageAccount.account_id)
        )
        async with self._read(session) as s:
            return list((await s.scalars(stmt)).all())

    async def apply_edit(self, session: AsyncSession, edit: Edit, *, part: int = 0) -> ChangeOutcome:
        """Apply an edit unless it is older than what is stored (by ``version`` when the network numbers
        edits, by timestamp otherwise). A deleted message stays deleted: an edit after a delete is ignored."""
        where = [
            MessageRow.network == edit.network,
            MessageRow.conversation_id == edit.conversation_id,
            MessageRow.remote_id == edit.target_id,
            MessageRow.part == part,
            MessageRow.deleted_at.is_(None),
        ]
        if edit.version is not None:
            where.append(MessageRow.edit_version < edit.version)
            version: Any = edit.version
        else:
            where.append(or_(MessageRow.edited_at.is_(None), MessageRow.edited_at < edit.timestamp))
            version = MessageRow.edit_version + 1
        stmt = (
            update(MessageRow)
            .where(and_(*where))
            .values(
                text=edit.text,
                formatted=edit.formatted,
                format=edit.format.value,
                edited_at=edit.timestamp,
                edit_version=version,
            )
            .returning(MessageRow.id)
            .execution_options(synchronize_session=False)
        )
        applied = (await session.execute(stmt)).scalar_one_or_none()
        if applied is not None:
            return ChangeOutcome(applied=True, target_exists=True, message_id=applied)
        existing = await self._id_of(session, edit.network, edit.conversation_id, edit.target_id, part)
        return ChangeOutcome(applied=False, target_exists=existing is not None, message_id=existing)

    async def apply_delete(self, session: AsyncSession, deletion: Delete) -> ChangeOutcome:
        """Tombstone every part of the target: ``deleted_at`` is set and the content is cleared (the sender
        asked for it to be gone). Deleting twice changes nothing the second time."""
        stmt = (
            update(MessageRow)
            .where(
                MessageRow.network == deletion.network,
                MessageRow.conversation_id == deletion.conversation_id,
                MessageRow.remote_id == deletion.target_id,
                MessageRow.deleted_at.is_(None),
            )
            .values(deleted_at=deletion.timestamp, text="", formatted=None, attachments=[], mentions=[])
            .returning(MessageRow.id)
            .execution_options(synchronize_session=False)
        )
        changed = sorted((await session.execute(stmt)).scalars().all())
        if changed:
            return ChangeOutcome(applied=True, target_exists=True, message_id=changed[0])
        existing = await self._id_of(
            session, deletion.network, deletion.conversation_id, deletion.target_id, 0
        )
        return ChangeOutcome(applied=False, target_exists=existing is not None, message_id=existing)

    async def _id_of(
        self, session: AsyncSession, network: str, conversation_id: str, remote_id: str, part: int
    ) -> int | None:
        stmt = select(MessageRow.id).where(
            tuple_(*KEY_COLUMNS) == (network, conversation_id, remote_id, part)
        )
        return await session.scalar(stmt)

    async def history(
        self,
        network: str,
        conversation_id: str,
        *,
        before_cursor: int | None = None,
        limit: int = 50,
        account_id: str | None = None,
        session: AsyncSession | None = None,
    ) -> list[StoredMessage]:
        """Newest first. The next page is ``before_cursor=page[-1].id``. With ``account_id``, only what that
        account saw (what the API shows a user who linked only that account), and what that account sent
        itself is marked ``sender.is_self``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        stmt = select(MessageRow).where(
            MessageRow.network == network, MessageRow.conversation_id == conversation_id
        )
        if before_cursor is not None:
            stmt = stmt.where(MessageRow.id < before_cursor)
        if account_id is not None:
            stmt = stmt.join(MessageAccount, MessageAccount.message_id == MessageRow.id).where(
                MessageAccount.account_id == account_id
            )
        stmt = stmt.order_by(MessageRow.id.desc()).limit(limit)
        async with self._read(session) as s:
            self_id = None
            if account_id is not None:
                self_id = await s.scalar(
                    select(BridgeAccount.remote_user_id).where(BridgeAccount.id == account_id)
                )
            return [stored(row, self_id=self_id) for row in (await s.scalars(stmt)).all()]
