"""History sync: the chunks of past messages WhatsApp sends a newly linked device, imported with progress.

WhatsApp starts sending them as soon as the phone has paired, so the first chunks usually reach the link
flow's short-lived connection, before the account exists. ``LinkHistory`` keeps what that connection got
(bounded) and the flow hands it over in the ``link_history`` secret of its result (encrypted by the
credential layer like the session: it is the person's messages). When the account starts, the connector
imports that secret through ``ctx.sink`` and deletes it once the last of its messages is stored (the ack
of the last push): a crash before that imports it again, and the store drops what it already has. Chunks
that reach the running account are imported as they come (``Inbound._history``).

Progress goes to ``ctx.progress`` per conversation (phase ``history``): ``done`` counts the conversation's
messages imported so far, ``total`` is known for the handed-over part, and a conversation is ``finished``
when WhatsApp marks its transfer ended or the sync reaches 100 %.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections import OrderedDict
from typing import Any

PREFIX = "wahist1:"
SECRET_HISTORY = "link_history"
LINK_MESSAGES_MAX = 20_000
"""The most history messages the link flow keeps for the account (the newest chunks go first when full)."""
DECODED_MAX = 256 * 1024 * 1024
CONVERSATIONS_TRACKED = 10_000
"""Conversations whose live import counts are kept (the oldest go first)."""


def chunk_items(event: Any, as_dict: Any) -> list[tuple[str, dict[str, Any], bool]]:
    """``(chat, WebMessageInfo as a dict, transfer ended)`` for every message of a ``HistorySync`` event."""
    items = []
    for conversation in event.Data.conversations:
        ended = bool(conversation.endOfHistoryTransfer)
        for item in conversation.messages:
            items.append((conversation.ID, as_dict(item.message), ended))
    return items


class LinkHistory:
    """What the link flow's connection received, to hand over to the account."""

    def __init__(self, max_messages: int = LINK_MESSAGES_MAX) -> None:
        self.max_messages = max_messages
        self.messages: list[dict[str, Any]] = []
        self.dropped = 0
        self.chunks = 0

    def add(self, event: Any, as_dict: Any) -> None:
        self.chunks += 1
        for chat, web, _ in chunk_items(event, as_dict):
            if len(self.messages) >= self.max_messages:
                self.dropped += 1
                continue
            self.messages.append({"chat": chat, "message": web})

    def secret(self) -> str | None:
        if not self.messages:
            return None
        data = json.dumps({"messages": self.messages, "dropped": self.dropped}, separators=(",", ":"))
        return PREFIX + base64.b64encode(zlib.compress(data.encode(), 6)).decode()


def decode_history(blob: str) -> list[dict[str, Any]]:
    """The messages of a ``link_history`` secret; ``ValueError`` when it is not one."""
    if not blob.startswith(PREFIX):
        raise ValueError("not a WhatsApp link history")
    inflater = zlib.decompressobj()
    raw = inflater.decompress(base64.b64decode(blob[len(PREFIX) :]), DECODED_MAX)
    if inflater.unconsumed_tail:
        raise ValueError(f"a WhatsApp link history larger than {DECODED_MAX} bytes")
    messages = json.loads(raw).get("messages")
    if not isinstance(messages, list):
        raise ValueError("a WhatsApp link history without messages")
    return [m for m in messages if isinstance(m, dict) and isinstance(m.get("chat"), str)]


class LiveProgress:
    """Counts per conversation of the chunks that reach the running account, for ``ctx.progress``."""

    def __init__(self) -> None:
        self.done: OrderedDict[str, int] = OrderedDict()

    def report(self, progress: Any, event: Any, counts: dict[str, int], ended: set[str]) -> None:
        complete = event.Data.progress >= 100
        for chat, count in counts.items():
            self.done[chat] = self.done.pop(chat, 0) + count
            while len(self.done) > CONVERSATIONS_TRACKED:
                self.done.popitem(last=False)
        for chat in list(self.done) if complete else counts:
            finished = complete or chat in ended
            progress.report(chat, done=self.done[chat], finished=finished)
        if complete:
            self.done.clear()
