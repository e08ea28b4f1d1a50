"""What the Matrix connector sends, through mautrix's ``ClientAPI`` (``MatrixOutbound``, the connector's
base class): messages (text, then one event per attachment, streamed from ``ctx.media.open`` into the
homeserver upload), edits, redactions, reactions, read receipts and typing; and the pure builders of event
contents (the inverse of ``convert``).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.types import EventID, EventType, ReceiptType, RoomID

from msgr_bridge import BaseConnector
from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import (
    Attachment,
    Capabilities,
    OutboundMessage,
    ReactionAction,
    SendResult,
    TextFormat,
)

from . import client as wire
from .convert import HTML_FORMAT, PART_SEPARATOR
from .timeline import Timeline

TYPING_TIMEOUT_MS = 30_000


class MatrixOutbound(BaseConnector):
    """The outbound methods; ``MatrixConnector`` sets what they use when it connects."""

    user_id: str
    timeline: Timeline
    _caps: Capabilities

    def _api(self) -> Client:
        raise NotImplementedError

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str) -> str:
        etype = EventType.find(event_type, t_class=EventType.Class.MESSAGE)
        async with wire.wire_errors(f"send {event_type}"):
            sent = await self._api().send_message_event(
                RoomID(room_id),
                etype,
                cast(Any, content),
                txn_id=txn_id,  # mautrix sends a dict as it is
            )
        return str(sent)

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        """Text first, then one event per attachment; transaction ids ``txn``, ``txn~1``, ``txn~2``..."""
        contents: list[tuple[str, dict[str, Any]]] = []
        if message.text or not message.attachments:
            contents.append(("m.room.message", add_relations(text_content(message), message)))
        max_size = self._caps.attachments[0].max_size if self._caps.attachments else None
        for attachment in message.attachments:
            url = attachment.url or ""
            size = attachment.size
            if not url.startswith("mxc://"):  # already on the homeserver, else streamed from the core
                async with self.ctx.media.open(attachment, max_bytes=max_size) as media:
                    size = media.size
                    async with wire.wire_errors("media upload"):
                        url = await self._api().upload_media(
                            media.chunks, attachment.mime_type, attachment.name, size
                        )
            contents.append(("m.room.message", media_content(attachment, url, size)))
        if not message.text and message.attachments:
            add_relations(contents[0][1], message)
        ids = []
        for i, (etype, content) in enumerate(contents):
            txn = message.txn_id if i == 0 else f"{message.txn_id}{PART_SEPARATOR}{i}"
            ids.append(await self._send(conversation_id, etype, content, txn))
        return SendResult(remote_id=ids[0], extra_parts=tuple(ids[1:]))

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        event_id = await self._send(
            conversation_id, "m.room.message", edit_content(target_id, message), message.txn_id
        )
        return SendResult(remote_id=event_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        async with wire.wire_errors("redaction"):
            await self._api().redact(RoomID(conversation_id), EventID(target_id))

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        """Add: send an ``m.annotation`` (once). Remove: redact our reaction event with that key."""
        reactions = self.timeline.reactions
        if action == ReactionAction.ADD:
            if await reactions.own_reaction(conversation_id, target_id, emoji) is not None:
                return
            content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target_id, "key": emoji}}
            try:
                sent = await self._send(conversation_id, "m.reaction", content, uuid.uuid4().hex)
            except PermanentError:  # e.g. M_DUPLICATE_ANNOTATION: reacted from another device already
                found = await self._find_own_reaction(conversation_id, target_id, emoji)
                if found is None:
                    raise
                sent = found
            await reactions.remember(sent, target_id, emoji, self.user_id, conversation_id)
        else:
            own = await reactions.own_reaction(conversation_id, target_id, emoji)
            own = own or await self._find_own_reaction(conversation_id, target_id, emoji)
            if own is None:
                return  # nothing to remove
            await self.delete(conversation_id, own)
            await reactions.forget_own(conversation_id, target_id, emoji)

    async def _find_own_reaction(self, room_id: str, target_id: str, emoji: str) -> str | None:
        """Our reaction with ``emoji`` on ``target_id``, asked from the server (when the map lost it)."""
        path = Path.v1.rooms[room_id].relations[target_id]["m.annotation"]["m.reaction"]
        page = await wire.raw(self._api(), Method.GET, path, "reaction lookup", query={"limit": "100"})
        for event in page.get("chunk") or []:
            rel = (event.get("content") or {}).get("m.relates_to") or {}
            if event.get("sender") == self.user_id and rel.get("key") == emoji:
                return str(event["event_id"])
        return None

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        async with wire.wire_errors("read receipt"):
            await self._api().send_receipt(RoomID(conversation_id), EventID(up_to_id), ReceiptType.READ)

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        async with wire.wire_errors("typing"):
            await self._api().set_typing(RoomID(conversation_id), TYPING_TIMEOUT_MS if active else 0)


# --- event contents ---------------------------------------------------------------------------------


def text_content(message: OutboundMessage) -> dict[str, Any]:
    """``m.text`` content with an HTML ``formatted_body`` when the message has one."""
    content: dict[str, Any] = {"msgtype": "m.text", "body": message.text}
    if message.format == TextFormat.HTML and message.formatted:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = message.formatted
    if message.mentions:
        content["m.mentions"] = {"user_ids": [m.user_id for m in message.mentions]}
    return content


def add_relations(content: dict[str, Any], message: OutboundMessage) -> dict[str, Any]:
    """Reply (``m.in_reply_to``) and thread (``m.thread``) relations of an outbound message."""
    if message.thread_id:
        rel: dict[str, Any] = {"rel_type": "m.thread", "event_id": message.thread_id}
        rel["m.in_reply_to"] = {"event_id": message.reply_to or message.thread_id}
        rel["is_falling_back"] = message.reply_to is None
        content["m.relates_to"] = rel
    elif message.reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": message.reply_to}}
    return content


def edit_content(target_id: str, message: OutboundMessage) -> dict[str, Any]:
    """An ``m.replace`` edit: a fallback body for old clients plus ``m.new_content``."""
    new = text_content(message)
    content: dict[str, Any] = {
        "msgtype": "m.text",
        "body": f"* {message.text}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target_id},
    }
    if "formatted_body" in new:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = f"* {new['formatted_body']}"
    return content


def media_msgtype(mime_type: str) -> str:
    major = mime_type.split("/", 1)[0]
    return {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(major, "m.file")


def media_content(attachment: Attachment, mxc: str, size: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {"mimetype": attachment.mime_type}
    if size is not None:
        info["size"] = size
    return {
        "msgtype": media_msgtype(attachment.mime_type),
        "body": attachment.name,
        "filename": attachment.name,
        "url": mxc,
        "info": info,
    }
