"""From Telethon's raw updates to payloads: what each update adds to its payload, and the ``pts`` it moves.

Telegram leaves some context out that ``convert`` (pure) cannot find alone, so it is added here from what
the connector has seen, in bounded memory:

- deletes in private chats and basic groups carry only message ids: the conversation comes from the
  ids seen before (``conversations``; the SDK's message id lookups slot in here). Ids never seen are
  reported in the log and skipped;
- reactions arrive as the message's current totals: the change is computed against the last totals seen;
- our own sends come back as updates: the transaction id is found through Telegram's ``random_id``;
- edits, reactions and replies aimed at a later message of an album go to its first one (``anchors``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from telethon.tl import types

from .client import conversation_id, names_of, payload
from .state import COMMON

MEMORY_MAX = 50_000


class Bounded(OrderedDict[Any, Any]):
    """A dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int = MEMORY_MAX) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Mark:
    """Where an update moves the update state: the box (``COMMON`` or a channel id) and its new ``pts``."""

    box: int
    pts: int
    date: int
    count: int = 0


def mark_of(update: Any) -> Mark | None:
    pts = getattr(update, "pts", None)
    if not isinstance(pts, int) or not pts:
        return None
    message = getattr(update, "message", None)
    date = getattr(message, "date", None)
    stamp = int(date.timestamp()) if date is not None else 0
    channel = getattr(update, "channel_id", None)
    peer = getattr(message, "peer_id", None)
    if channel is None and isinstance(peer, types.PeerChannel):
        channel = peer.channel_id
    count = getattr(update, "pts_count", 0)
    return Mark(
        channel if isinstance(channel, int) else COMMON, pts, stamp, count if isinstance(count, int) else 0
    )


def own_marks(result: Any, box: int) -> list[Mark]:
    """Where the answer to one of our own requests moved the update state (``box``: the channel acted in,
    or ``COMMON``). Telethon applies these without handing them to the update handlers."""
    if isinstance(result, types.messages.AffectedMessages | types.messages.AffectedHistory):
        return [Mark(box, result.pts, 0, result.pts_count)] if result.pts else []
    if isinstance(result, types.UpdateShortSentMessage):
        return [Mark(COMMON, result.pts, 0, result.pts_count)]
    return [m for u in getattr(result, "updates", None) or [] if (m := mark_of(u)) is not None]


class UpdateRouter:
    def __init__(self, self_id: int) -> None:
        self.self_id = self_id
        self.conversations = Bounded()
        """message id (common box) -> conversation id."""
        self.txn_by_random = Bounded(10_000)
        self.txn_by_message = Bounded(10_000)
        self.reactions = Bounded(10_000)
        self.anchors = Bounded(10_000)
        """(conversation, message id) -> the first message of its album (``album.py``)."""

    def expect(self, random_id: int, txn_id: str) -> None:
        self.txn_by_random.put(random_id, txn_id)

    def sent(self, conversation: str, message_id: int, txn_id: str) -> None:
        self.txn_by_message.put(message_id, txn_id)
        if not conversation.startswith("channel:"):
            self.conversations.put(message_id, conversation)

    def payloads(self, update: Any, entities: dict[int, Any] | None = None) -> list[dict[str, Any]]:
        """The payloads for one update (none for updates the bridge does not use)."""
        names = names_of({getattr(e, "id", k): e for k, e in (entities or {}).items()})
        if isinstance(update, types.UpdateMessageID):
            txn = self.txn_by_random.pop(update.random_id, None)
            if txn is not None:
                self.txn_by_message.put(update.id, txn)
            return []
        message = getattr(update, "message", None)
        if isinstance(update, types.UpdateNewMessage | types.UpdateNewChannelMessage) and isinstance(
            message, types.Message | types.MessageService
        ):
            return [self._message(update, message, names)]
        if isinstance(update, types.UpdateEditMessage | types.UpdateEditChannelMessage):
            toward = self._toward(getattr(message, "peer_id", None), getattr(message, "id", 0))
            return [payload(update, self.self_id, names=names, **toward)]
        if isinstance(update, types.UpdateDeleteMessages):
            return self._deleted(update)
        if isinstance(update, types.UpdateMessageReactions):
            return self._reactions(update, names)
        if isinstance(
            update,
            types.UpdateDeleteChannelMessages
            | types.UpdateReadHistoryInbox
            | types.UpdateReadHistoryOutbox
            | types.UpdateReadChannelInbox
            | types.UpdateReadChannelOutbox
            | types.UpdateUserTyping
            | types.UpdateChatUserTyping
            | types.UpdateChannelUserTyping,
        ):
            return [payload(update, self.self_id, names=names)]
        return []

    def _message(self, update: Any, message: Any, names: dict[str, str]) -> dict[str, Any]:
        conversation = conversation_id(message.peer_id)
        if not conversation.startswith("channel:"):
            self.conversations.put(message.id, conversation)
        reply = getattr(message.reply_to, "reply_to_msg_id", None)
        extra: dict[str, Any] = self._toward(message.peer_id, reply, "reply_target") if reply else {}
        if message.out:
            txn = self.txn_by_message.pop(message.id, None)
            if txn is not None:
                extra["txn_id"] = txn
        return payload(update, self.self_id, names=names, **extra)

    def _deleted(self, update: Any) -> list[dict[str, Any]]:
        by_conversation: dict[str, list[int]] = {}
        for msg_id in update.messages:
            conversation = self.conversations.pop(msg_id, None)
            if conversation is not None:
                by_conversation.setdefault(conversation, []).append(msg_id)
        return [
            payload(
                types.UpdateDeleteMessages(ids, update.pts, update.pts_count),
                self.self_id,
                conversation=conversation,
            )
            for conversation, ids in by_conversation.items()
        ]

    def _reactions(self, update: Any, names: dict[str, str]) -> list[dict[str, Any]]:
        key = (conversation_id(update.peer), update.msg_id)
        now: set[tuple[int, str]] = set()
        for item in update.reactions.recent_reactions or []:
            if isinstance(item.peer_id, types.PeerUser) and isinstance(item.reaction, types.ReactionEmoji):
                now.add((item.peer_id.user_id, item.reaction.emoticon))
        before: set[tuple[int, str]] = self.reactions.get(key, set())
        self.reactions.put(key, now)
        added, removed = sorted(now - before), sorted(before - now)
        if not added and not removed:
            return []
        changes = {"added": [list(x) for x in added], "removed": [list(x) for x in removed]}
        toward = self._toward(update.peer, update.msg_id)
        return [payload(update, self.self_id, names=names, reactions=changes, **toward)]

    def _toward(self, peer: Any, message_id: int, field: str = "target") -> dict[str, Any]:
        """``{field: id}`` when ``message_id`` is a later message of an album: the album's first one."""
        if not isinstance(peer, types.PeerUser | types.PeerChat | types.PeerChannel):
            return {}
        anchor = self.anchors.get((conversation_id(peer), message_id))
        return {field: str(anchor)} if anchor is not None else {}
