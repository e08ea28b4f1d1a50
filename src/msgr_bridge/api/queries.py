"""Read-only queries the API needs beyond the repositories: conversation summaries (unread, last message)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..store.db import Database
from ..store.models import MessageAccount, MessageRow, ReadMarker
from ..store.repos.messages import StoredMessage, stored


def message_json(m: StoredMessage) -> dict[str, Any]:
    return {
        "cursor": m.id,
        "id": m.remote_id,
        "part": m.part,
        "conversation_id": m.conversation_id,
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
    }


async def summary(
    db: Database, account_id: str, network: str, conversation_id: str, me: str
) -> dict[str, Any]:
    """Unread count (messages from others after this account's own read marker) and the last message."""
    seen = (
        select(MessageRow)
        .join(MessageAccount, MessageAccount.message_id == MessageRow.id)
        .where(
            MessageAccount.account_id == account_id,
            MessageRow.network == network,
            MessageRow.conversation_id == conversation_id,
        )
    )
    async with db.read() as s:
        last = (await s.scalars(seen.order_by(MessageRow.id.desc()).limit(1))).first()
        marker = await s.scalar(
            select(ReadMarker.up_to_id).where(
                ReadMarker.account_id == account_id,
                ReadMarker.conversation_id == conversation_id,
                ReadMarker.reader_id == me,
            )
        )
        after = 0
        if marker is not None:
            after = (
                await s.scalar(
                    select(func.max(MessageRow.id)).where(
                        MessageRow.network == network,
                        MessageRow.conversation_id == conversation_id,
                        MessageRow.remote_id == marker,
                    )
                )
                or 0
            )
        unread = await s.scalar(
            select(func.count()).select_from(
                seen.where(
                    MessageRow.id > after, MessageRow.sender_id != me, MessageRow.deleted_at.is_(None)
                ).subquery()
            )
        )
    last_json = message_json(stored(last, self_id=me)) if last else None
    return {"unread": int(unread or 0), "last_message": last_json}
