"""Message id lookups: a remote message id to the canonical stored message and back, read-only.

A connector maps a reply, edit, reaction or read marker that names a remote id without keeping its own
copy of the ids it has seen: the core already stores every message (inbound and our own sends)::

    ref = await ctx.messages.by_remote(conversation_id, remote_id)
    if ref is not None:
        ...  # ref.message_id is the canonical id, ref.sender_id who wrote it, ref.txn_id our send's id

Lookups see only the messages of the account's own conversations (the messages this account saw or sent).
``AccountMessageIds`` (``msgr_bridge.store.repos.message_ids``) answers from the database;
``MemoryMessageIds`` is the default in a ``ConnectorContext`` built by hand (a test adds what it needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Where one stored message part is, in both id spaces."""

    message_id: int
    """The canonical id (the API's message id; only grows)."""
    conversation_id: str
    remote_id: str
    part: int = 0
    sender_id: str = ""
    txn_id: str | None = None
    """Our outbound transaction id when the bridge sent it."""
    reply_to: str | None = None
    thread_id: str | None = None
    deleted: bool = False


class MessageIds(Protocol):
    async def by_remote(self, conversation_id: str, remote_id: str, part: int = 0) -> MessageRef | None:
        """The stored message with this remote id in this conversation, or None."""
        ...

    async def by_id(self, message_id: int) -> MessageRef | None:
        """The stored message with this canonical id, or None (also when another account's)."""
        ...

    async def by_txn(self, txn_id: str) -> MessageRef | None:
        """The stored message our send with this transaction id became, or None."""
        ...


class MemoryMessageIds:
    """``MessageIds`` over the refs given to it (empty by default: every lookup answers None)."""

    def __init__(self, refs: tuple[MessageRef, ...] | list[MessageRef] = ()) -> None:
        self.refs: list[MessageRef] = list(refs)

    def add(self, ref: MessageRef) -> None:
        self.refs.append(ref)

    async def by_remote(self, conversation_id: str, remote_id: str, part: int = 0) -> MessageRef | None:
        return next(
            (
                r
                for r in self.refs
                if (r.conversation_id, r.remote_id, r.part) == (conversation_id, remote_id, part)
            ),
            None,
        )

    async def by_id(self, message_id: int) -> MessageRef | None:
        return next((r for r in self.refs if r.message_id == message_id), None)

    async def by_txn(self, txn_id: str) -> MessageRef | None:
        return next((r for r in self.refs if r.txn_id == txn_id), None)
