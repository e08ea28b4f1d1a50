"""Read-only queries the API needs: a page of conversation summaries (unread, last message), whether a
conversation or message exists, history, members, an outbox entry, receipts of our messages;
``ApiQueries`` is the routes' service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import aliased

from ..store.db import Database
from ..store.models import BridgeChannel, MessageAccount, MessageRow, ReadMarker
from ..store.repos.entities import MembershipRepo
from ..store.repos.messages import MessageRepo, StoredMessage, stored
from ..store.repos.outbox import OutboxEntry, OutboxRepo
from ..store.repos.receipts import ReceiptRepo, StoredReceipt
from .paths import path_id


def receipt_json(r: StoredReceipt) -> dict[str, Any]:
    return {
        "user_id": r.recipient_id,
        "display_name": r.recipient_name,
        "state": r.state.value,
        "delivered_at": r.delivered_at.isoformat(),
        "read_at": r.read_at.isoformat() if r.read_at else None,
    }


def message_json(m: StoredMessage, receipts: list[StoredReceipt] | None = None) -> dict[str, Any]:
    """A stored message as the API shows it. ``receipts`` (who received and read it) is a list for the
    account's own messages in a history page, null elsewhere."""
    return {
        "cursor": m.id,
        "id": m.remote_id,
        "path_id": path_id(m.remote_id),
        "part": m.part,
        "conversation_id": m.conversation_id,
        "conversation_path_id": path_id(m.conversation_id),
        "sender": m.sender.model_dump(mode="json"),
        "text": m.text,
        "formatted": m.formatted,
        "format": m.format.value,
        "attachments": [a.model_dump(mode="json") for a in m.attachments],
        "reply_to": m.reply_to,
        "thread_id": m.thread_id,
        "sent_at": m.sent_at.isoformat(),
        "edited_at": m.edited_at.isoformat() if m.edited_at else None,
        "edit_version": m.edit_version,
        "deleted": m.deleted_at is not None,
        "txn_id": m.txn_id,
        "receipts": None if receipts is None else [receipt_json(r) for r in receipts],
    }


UNREAD_CAP = 999
"""Unread counts stop here (``unread_capped`` says there are more): counting stops at the cap."""


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    id: str
    name: str | None
    type: str
    topic: str | None
    unread: int
    last_message: StoredMessage | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path_id": path_id(self.id),
            "name": self.name,
            "type": self.type,
            "topic": self.topic,
            "unread": min(self.unread, UNREAD_CAP),
            "unread_capped": self.unread > UNREAD_CAP,
            "last_message": message_json(self.last_message) if self.last_message else None,
        }


async def conversation_page(
    db: Database, account_id: str, network: str, me: str, *, after: str | None, limit: int
) -> list[ConversationSummary]:
    """Up to ``limit`` conversations of an account ordered by id, after the id ``after``, each with its
    unread count (messages from others after this account's own read marker, counted up to
    ``UNREAD_CAP + 1``) and its last message. Two queries whatever the page size: one for the page with
    correlated subqueries (each walks the ``(network, conversation_id, id)`` index of ``messages`` from the
    newest end, or from the read marker), one for the last messages' rows."""
    ch = aliased(BridgeChannel)

    def seen(m: Any, ma: Any) -> Select[Any]:
        return (
            select(m.id)
            .join(ma, (ma.message_id == m.id) & (ma.account_id == account_id))
            .where(m.network == network, m.conversation_id == ch.remote_id)
        )

    m1, ma1 = aliased(MessageRow), aliased(MessageAccount)
    last_id = seen(m1, ma1).order_by(m1.id.desc()).limit(1).correlate(ch).scalar_subquery()
    m2 = aliased(MessageRow)
    marker_id = (
        select(func.max(m2.id))
        .join(
            ReadMarker,
            (ReadMarker.account_id == account_id)
            & (ReadMarker.conversation_id == m2.conversation_id)
            & (ReadMarker.reader_id == me)
            & (ReadMarker.up_to_id == m2.remote_id),
        )
        .where(m2.network == network, m2.conversation_id == ch.remote_id)
        .correlate(ch)
        .scalar_subquery()
    )
    m3, ma3 = aliased(MessageRow), aliased(MessageAccount)
    unread_rows = (
        seen(m3, ma3)
        .where(m3.id > func.coalesce(marker_id, 0), m3.sender_id != me, m3.deleted_at.is_(None))
        .limit(UNREAD_CAP + 1)
        .correlate(ch)
        .subquery()
    )
    unread = select(func.count()).select_from(unread_rows).correlate(ch).scalar_subquery()
    page = (
        select(ch.remote_id, ch.name, ch.type, ch.topic, unread.label("unread"), last_id.label("last_id"))
        .where(ch.account_id == account_id)
        .order_by(ch.remote_id)
        .limit(limit)
    )
    if after is not None:
        page = page.where(ch.remote_id > after)
    async with db.read() as s:
        rows = (await s.execute(page)).all()
        wanted = [r.last_id for r in rows if r.last_id is not None]
        last: dict[int, StoredMessage] = {}
        if wanted:
            for m in (await s.scalars(select(MessageRow).where(MessageRow.id.in_(wanted)))).all():
                last[m.id] = stored(m, self_id=me)
    return [
        ConversationSummary(r.remote_id, r.name, r.type, r.topic, int(r.unread or 0), last.get(r.last_id))
        for r in rows
    ]


async def conversation_exists(db: Database, account_id: str, conversation_id: str) -> bool:
    """Whether the account knows the conversation (a sync snapshot named it, or it has a stored message)."""
    stmt = select(BridgeChannel.id).where(
        BridgeChannel.account_id == account_id, BridgeChannel.remote_id == conversation_id
    )
    async with db.read() as s:
        return (await s.scalar(stmt.limit(1))) is not None


async def message_exists(
    db: Database, account_id: str, network: str, conversation_id: str, remote_id: str
) -> bool:
    """Whether the account saw a message with this remote id in this conversation (any part)."""
    stmt = (
        select(MessageRow.id)
        .join(
            MessageAccount,
            (MessageAccount.message_id == MessageRow.id) & (MessageAccount.account_id == account_id),
        )
        .where(
            MessageRow.network == network,
            MessageRow.conversation_id == conversation_id,
            MessageRow.remote_id == remote_id,
        )
        .limit(1)
    )
    async with db.read() as s:
        return (await s.scalar(stmt)) is not None


class ApiQueries:
    """The read-only lookups routes make (``services.Queries``), over the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def conversation_exists(self, account_id: str, conversation_id: str) -> bool:
        return await conversation_exists(self._db, account_id, conversation_id)

    async def message_exists(
        self, account_id: str, network: str, conversation_id: str, remote_id: str
    ) -> bool:
        return await message_exists(self._db, account_id, network, conversation_id, remote_id)

    async def conversation_page(
        self, account_id: str, network: str, me: str, *, after: str | None, limit: int
    ) -> list[ConversationSummary]:
        return await conversation_page(self._db, account_id, network, me, after=after, limit=limit)

    async def history(
        self, account_id: str, network: str, conversation_id: str, *, before: int | None, limit: int
    ) -> list[StoredMessage]:
        return await MessageRepo(self._db).history(
            network, conversation_id, before_cursor=before, limit=limit, account_id=account_id
        )

    async def members(self, account_id: str, conversation_id: str) -> list[str]:
        return await MembershipRepo(self._db).members(account_id, conversation_id)

    async def outbox_entry(self, outbox_id: str) -> OutboxEntry | None:
        return await OutboxRepo(self._db).get(outbox_id)

    async def receipts(self, message_ids: Sequence[int]) -> dict[int, list[StoredReceipt]]:
        return await ReceiptRepo(self._db).for_messages(message_ids)
