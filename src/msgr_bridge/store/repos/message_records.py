"""The message repository's records: the outcomes it returns, ``StoredMessage``, and the message key.

Both halves of ``MessageRepo`` (the batch insert in ``message_inserts`` and the reads, edits and deletes in
``messages``) share these, and the API renders ``StoredMessage`` rows directly (``stored``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from ...schema import Attachment, Mention, Message, Sender, TextFormat, content_of
from ..models import MessageAccount, MessageRow
from ._base import table

__all__ = [
    "KEY_COLUMNS",
    "LINKS",
    "MESSAGES",
    "BatchResult",
    "ChangeOutcome",
    "InsertOutcome",
    "Key",
    "StoredMessage",
    "TxnMatch",
    "key_of",
    "stored",
]

Key = tuple[str, str, str, int]
MESSAGES = table(MessageRow)
LINKS = table(MessageAccount)
KEY_COLUMNS = (MessageRow.network, MessageRow.conversation_id, MessageRow.remote_id, MessageRow.part)


class InsertOutcome(NamedTuple):
    """What ``insert_batch`` did with one message: its row id, whether the row is new, and whether this
    account was newly linked to it (False for a true duplicate; True for a second account's copy). A named
    tuple: one is made per message of every batch, and a frozen dataclass took twice as long to make."""

    message_id: int
    created: bool
    linked_account: bool


@dataclass(frozen=True, slots=True)
class BatchResult:
    """A batch of messages stored with their event-log entries in one go (``message_inserts_thread`` on
    SQLite, ``message_inserts_pg`` on PostgreSQL)."""

    outcomes: list[InsertOutcome]
    """One per message, in input order (as ``MessageRepo.insert_batch``)."""
    seqs: list[int]
    """The event-log positions of the new messages' entries, in input order."""


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


def stored(row: MessageRow, *, self_id: str | None = None) -> StoredMessage:
    """``row`` as a ``StoredMessage``; ``self_id`` (the reading account's ``remote_user_id``) marks the
    messages that account sent as ``is_self`` (the inbound pipeline stores them under that id)."""
    return StoredMessage(
        id=row.id,
        network=row.network,
        conversation_id=row.conversation_id,
        remote_id=row.remote_id,
        part=row.part,
        sender=Sender(
            user_id=row.sender_id,
            display_name=row.sender_name,
            is_self=self_id is not None and row.sender_id == self_id,
        ),
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
