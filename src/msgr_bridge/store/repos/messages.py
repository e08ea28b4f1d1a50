"""Canonical messages: batched, deduplicated inserts; echo matching; edits, deletes and history.

The database constraint is the truth for dedupe: a message's key is (network, conversation, remote id, part),
and ``message_accounts`` is unique per (account, message). ``insert_batch`` therefore tells, per message,
whether it was new and whether this account had already seen it, from what the constraints let through:
no read-before-write race, and the same answer after a crash and a replay.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, literal_column, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import DatabaseError
from ...schema import Attachment, Delete, Edit, Mention, Message, Sender, TextFormat, content_of
from ..models import MessageAccount, MessageRow, OutboxRow
from ._base import Repository, chunks, dialect_insert, table

Key = tuple[str, str, str, int]
MESSAGES = table(MessageRow)
LINKS = table(MessageAccount)
KEY_COLUMNS = (MessageRow.network, MessageRow.conversation_id, MessageRow.remote_id, MessageRow.part)


@dataclass(frozen=True, slots=True)
class InsertOutcome:
    """What ``insert_batch`` did with one message: its row id, whether the row is new, and whether this
    account was newly linked to it (False for a true duplicate; True for a second account's copy)."""

    message_id: int
    created: bool
    linked_account: bool


@dataclass(frozen=True, slots=True)
class TxnMatch:
    """An inbound message's transaction id belongs to our own outbound send (an echo)."""

    txn_id: str
    outbox_id: str | None
    outbox_state: str | None
    remote_id: str | None
    message_id: int | None
    """The stored message with this transaction id, when it is already stored."""


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """Result of an edit or delete: ``applied`` when it changed the row; ``target_exists`` tells a stale or
    redundant change (True) from one whose target has not arrived yet (False: hold it and retry)."""

    applied: bool
    target_exists: bool
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stored message part. ``id`` is the cursor: it only grows."""

    id: int
    network: str
    conversation_id: str
    remote_id: str
    part: int
    sender: Sender
    text: str
    formatted: str | None
    format: TextFormat
    attachments: tuple[Attachment, ...]
    reply_to: str | None
    thread_id: str | None
    mentions: tuple[Mention, ...]
    sent_at: datetime
    edited_at: datetime | None
    edit_version: int
    deleted_at: datetime | None
    txn_id: str | None
    outbox_id: str | None

    def to_message(self, account_id: str) -> Message:
        """The canonical message, as seen by ``account_id``."""
        return Message(
            network=self.network,
            account_id=account_id,
            conversation_id=self.conversation_id,
            timestamp=self.sent_at,
            remote_id=self.remote_id,
            part=self.part,
            sender=self.sender,
            txn_id=self.txn_id,
            **content_of(self),
        )


def stored(row: MessageRow) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        network=row.network,
        conversation_id=row.conversation_id,
        remote_id=row.remote_id,
        part=row.part,
        sender=Sender(user_id=row.sender_id, display_name=row.sender_name),
        text=row.text,
        formatted=row.formatted,
        format=TextFormat(row.format),
        attachments=tuple(Attachment.model_validate(a) for a in row.attachments or ()),
        reply_to=row.reply_to,
        thread_id=row.thread_id,
        mentions=tuple(Mention.model_validate(m) for m in row.mentions or ()),
        sent_at=row.sent_at,
        edited_at=row.edited_at,
        edit_version=row.edit_version,
        deleted_at=row.deleted_at,
        txn_id=row.txn_id,
        outbox_id=row.outbox_id,
    )


def key_of(message: Message) -> Key:
    return (message.network, message.conversation_id, message.remote_id, message.part)


def _row(message: Message, outbox_id: str | None) -> dict[str, Any]:
    return {
        "network": message.network,
        "conversation_id": message.conversation_id,
        "remote_id": message.remote_id,
        "part": message.part,
        "sender_id": message.sender.user_id,
        "sender_name": message.sender.display_name,
        "text": message.text,
        "formatted": message.formatted,
        "format": message.format.value,
        "attachments": [a.model_dump(mode="json", exclude_none=True) for a in message.attachments],
        "reply_to": message.reply_to,
        "thread_id": message.thread_id,
        "mentions": [m.model_dump(mode="json", exclude_none=True) for m in message.mentions],
        "sent_at": message.timestamp,
        "edited_at": None,
        "edit_version": 0,
        "deleted_at": None,
        "txn_id": message.txn_id,
        "outbox_id": outbox_id,
    }


class MessageRepo(Repository):
    async def insert_batch(self, session: AsyncSession, messages: Sequence[Message]) -> list[InsertOutcome]:
        """Store a batch in the caller's transaction; one outcome per input message, in input order.

        Three statements whatever the batch size (plus a lookup of the ids of duplicates): a multi-row
        ``INSERT .. ON CONFLICT DO NOTHING RETURNING`` for the messages, the same for the account links,
        and the outbox ids of messages that carry one of our transaction ids.
        """
        if not messages:
            return []
        first: dict[Key, int] = {}
        for index, message in enumerate(messages):
            first.setdefault(key_of(message), index)
        unique = [messages[i] for i in first.values()]
        outbox_ids = await self._outbox_ids(session, {m.txn_id for m in unique if m.txn_id})

        ids: dict[Key, int] = {}
        created: set[Key] = set()
        if session.get_bind().dialect.name == "postgresql":
            await self._upsert_postgres(session, unique, outbox_ids, ids, created)
        else:
            stmt = (
                dialect_insert(session, MESSAGES)
                .on_conflict_do_nothing()
                .returning(MESSAGES.c.id, *KEY_COLUMNS)
            )
            rows = [_row(m, outbox_ids.get(m.txn_id) if m.txn_id else None) for m in unique]
            for row in (await session.execute(stmt, rows)).all():
                k = (row.network, row.conversation_id, row.remote_id, row.part)
                ids[k] = row.id
                created.add(k)
            await self._resolve_existing(session, [k for k in first if k not in ids], unique, ids)

        pairs = list(dict.fromkeys((m.account_id, ids[key_of(m)]) for m in messages))
        link = dialect_insert(session, LINKS).on_conflict_do_nothing()
        link_result = await session.execute(
            link.returning(LINKS.c.account_id, LINKS.c.message_id),
            [{"account_id": a, "message_id": mid} for a, mid in pairs],
        )
        linked = {(r.account_id, r.message_id) for r in link_result.all()}

        outcomes: list[InsertOutcome] = []
        seen_pairs: set[tuple[str, int]] = set()
        for index, message in enumerate(messages):
            k = key_of(message)
            mid = ids[k]
            pair = (message.account_id, mid)
            outcomes.append(
                InsertOutcome(
                    message_id=mid,
                    created=k in created and first[k] == index,
                    linked_account=pair in linked and pair not in seen_pairs,
                )
            )
            seen_pairs.add(pair)
        return outcomes

    async def _upsert_postgres(
        self,
        session: AsyncSession,
        unique: Sequence[Message],
        outbox_ids: dict[str, str],
        ids: dict[Key, int],
        created: set[Key],
    ) -> None:
        """PostgreSQL: learn the ids of duplicates from the INSERT itself, never from a lookup by key.

        A lookup of skipped keys depends on the planner: on a table not yet analyzed it scans the whole
        conversation (through the cursor index), which made every batch of duplicates slower as the table
        grew. ``ON CONFLICT (key) DO UPDATE ... RETURNING id, xmax = 0`` goes through the unique index
        whatever the statistics say, and tells an insert (``xmax = 0``) from an existing row. Echoes whose
        transaction id is already stored under another key are resolved first, through the txn_id index.
        """
        with_txn = {m.txn_id: key_of(m) for m in unique if m.txn_id}
        if with_txn:
            stmt = select(MessageRow.txn_id, MessageRow.id, *KEY_COLUMNS).where(
                MessageRow.txn_id.in_(list(with_txn))
            )
            for row in (await session.execute(stmt)).all():
                k = with_txn[row.txn_id]
                if (row.network, row.conversation_id, row.remote_id, row.part) != k:
                    ids[k] = row.id  # the echo of a send stored under its own key: not stored again
        rows = [
            _row(m, outbox_ids.get(m.txn_id) if m.txn_id else None) for m in unique if key_of(m) not in ids
        ]
        if not rows:
            return
        insert = postgresql.insert(MESSAGES)
        upsert = insert.on_conflict_do_update(
            index_elements=[
                MESSAGES.c.network,
                MESSAGES.c.conversation_id,
                MESSAGES.c.remote_id,
                MESSAGES.c.part,
            ],
            set_={"part": insert.excluded.part},
        ).returning(MESSAGES.c.id, *KEY_COLUMNS, literal_column("xmax = 0").label("inserted"))
        for row in (await session.execute(upsert, rows)).all():
            k = (row.network, row.conversation_id, row.remote_id, row.part)
            ids[k] = row.id
            if row.inserted:
                created.add(k)

    async def _outbox_ids(self, session: AsyncSession, txn_ids: set[str | None]) -> dict[str, str]:
        wanted = [t for t in txn_ids if t]
        if not wanted:
            return {}
        stmt = select(OutboxRow.txn_id, OutboxRow.id).where(OutboxRow.txn_id.in_(wanted))
        return {txn: oid for txn, oid in (await session.execute(stmt))}

    async def _resolve_existing(
        self, session: AsyncSession, missing: list[Key], unique: Sequence[Message], ids: dict[Key, int]
    ) -> None:
        """Find the ids of rows that the INSERT skipped: duplicates by key, or by transaction id."""
        wanted = set(missing)
        for part in chunks(missing, 1):
            # One OR-ed condition per conversation, so both backends use the unique index's prefix.
            groups: dict[tuple[str, str], set[str]] = defaultdict(set)
            for network, conversation_id, remote_id, _part in part:
                groups[(network, conversation_id)].add(remote_id)
            condition = or_(
                *(
                    and_(
                        MessageRow.network == network,
                        MessageRow.conversation_id == conversation_id,
                        MessageRow.remote_id.in_(sorted(remote_ids)),
                    )
                    for (network, conversation_id), remote_ids in groups.items()
                )
            )
            for row in (await session.execute(select(MessageRow.id, *KEY_COLUMNS).where(condition))).all():
                k = (row.network, row.conversation_id, row.remote_id, row.part)
                if k in wanted:
                    ids[k] = row.id
        by_txn = {m.txn_id: key_of(m) for m in unique if m.txn_id and key_of(m) not in ids}
        if by_txn:
            stmt2 = select(MessageRow.txn_id, MessageRow.id).where(MessageRow.txn_id.in_(list(by_txn)))
            for txn, mid in await session.execute(stmt2):
                if txn is not None:
                    ids[by_txn[txn]] = mid
        if unresolved := [k for k in missing if k not in ids]:
            raise DatabaseError(
                f"{len(unresolved)} message(s) were neither inserted nor found, e.g. {unresolved[0]!r}",
                hint="a concurrent delete removed them; the batch was rolled back and can be retried",
            )

    async def match_txn(self, txn_id: str, *, session: AsyncSession | None = None) -> TxnMatch | None:
        """Is ``txn_id`` one of our outbound transaction ids? Then the message is an echo of our own send."""
        async with self._tx(session) as s:
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
        async with self._tx(session) as s:
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
        async with self._tx(session) as s:
            row = (await s.scalars(stmt)).one_or_none()
            return stored(row) if row is not None else None

    async def accounts_for(self, message_id: int, *, session: AsyncSession | None = None) -> list[str]:
        """The linked accounts that saw this message."""
        stmt = (
            select(MessageAccount.account_id)
            .where(MessageAccount.message_id == message_id)
            .order_by(MessageAccount.account_id)
        )
        async with self._tx(session) as s:
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
        account saw (what the API shows a user who linked only that account)."""
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
        async with self._tx(session) as s:
            return [stored(row) for row in (await s.scalars(stmt)).all()]
