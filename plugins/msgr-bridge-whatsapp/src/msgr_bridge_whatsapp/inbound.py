"""What the connector does with neonize's events before the core sees them (a mixin of
``WhatsAppConnector``): each becomes a JSON-compatible dict without key material, a message's file is stored
through ``ctx.media`` first, an echo of our own send gets its transaction id, a reaction says which one it
replaces (WhatsApp keeps one per person), and a history-sync chunk is pushed message by message with its
progress logged."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as Proto

from .actions import remember
from .content import jid_text
from .convert import PAYLOAD_VERSION
from .media import store_inbound

DROPPED_FIELDS = {"Raw", "SourceWebMsg", "mediaKey", "JPEGThumbnail", "thumbnailEncSHA256", "thumbnailSHA256"}
DROPPED_FIELDS |= {"scansSidecar", "midQualityFileEncSHA256", "streamingSidecar", "waveform", "messageSecret"}

REACTIONS_MAX = 50_000
"""Reactions remembered per account (message, person): the oldest go first."""


def as_dict(event: Proto) -> dict[str, Any]:
    """A protobuf as a JSON-compatible dict, without key material and thumbnails (never stored)."""
    data = MessageToDict(event, preserving_proto_field_name=True)

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if k not in DROPPED_FIELDS}
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value

    return dict(prune(data))


class Inbound:
    ctx: Any
    log: Any
    wa: Any
    settings: Any
    self_jid: str
    sent: OrderedDict[str, str]
    authors: OrderedDict[str, str]

    def _payload(self, kind: str, event: dict[str, Any]) -> dict[str, Any]:
        return {"v": PAYLOAD_VERSION, "kind": kind, "self": self.self_jid, "event": event}

    async def _push(self, kind: str, event: Any) -> None:
        payload = self._payload(kind, as_dict(event))
        if kind == "message":
            source = event.Info.MessageSource
            message_id, chat = event.Info.ID, jid_text(payload["event"]["Info"]["MessageSource"].get("Chat"))
            remember(
                self.authors,
                f"{chat} {message_id}",
                jid_text(payload["event"]["Info"]["MessageSource"].get("Sender")),
            )
            if source.IsFromMe and message_id in self.sent:
                payload["txn_id"] = self.sent[message_id]
            if event.Message.HasField("reactionMessage"):
                await self._previous_reaction(payload, chat, event.Message.reactionMessage)
            content = payload["event"].get("Message") or {}
            media = await store_inbound(
                self.wa, self.ctx.media, event.Message, content, self.settings.media_max_bytes, self.log
            )
            if media:
                payload["media"] = media
        await self.ctx.sink.push(payload)

    async def _previous_reaction(self, payload: dict[str, Any], chat: str, reaction: Any) -> None:
        """WhatsApp's one reaction per person: remember it (in ``ctx.state``, so across restarts too) and
        tell convert what a new one replaces."""
        reactions = self.ctx.state.map("reactions", max_entries=REACTIONS_MAX)
        sender = jid_text(payload["event"]["Info"]["MessageSource"].get("Sender"))
        key = f"{chat} {reaction.key.ID} {sender}"
        previous = await reactions.get(key)
        if isinstance(previous, str) and previous:
            payload["previous_reaction"] = previous
        if reaction.text:
            await reactions.set(key, reaction.text)
        elif previous is not None:
            await reactions.delete(key)

    async def _history(self, event: Any) -> None:
        data = event.Data
        messages = 0
        for conversation in data.conversations:
            for item in conversation.messages:
                web = as_dict(item.message)
                await self.ctx.sink.push(self._payload("history", {"chat": conversation.ID, "message": web}))
                messages += 1
        self.log.info(
            "whatsapp.history_sync",
            sync_type=type(data).HistorySyncType.Name(data.syncType),
            chunk=data.chunkOrder,
            progress_percent=data.progress,
            conversations=len(data.conversations),
            messages=messages,
        )
