"""What the connector does with neonize's events before the core sees them (a mixin of
``WhatsAppConnector``): each becomes a JSON-compatible dict without key material, a message's file is stored
through ``ctx.media`` first, an echo of our own send gets its transaction id, a reaction says which one it
replaces (WhatsApp keeps one per person), and a history-sync chunk is pushed message by message with its
progress reported to ``ctx.progress`` (``history.py``; the chunks the link flow received are imported when
the account starts)."""

from __future__ import annotations

import binascii
import zlib
from collections import Counter, OrderedDict
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as Proto

from .actions import remember
from .content import jid_text
from .convert import PAYLOAD_VERSION
from .history import SECRET_HISTORY, LiveProgress, chunk_items, decode_history
from .media import store_inbound

DROPPED_FIELDS = {"Raw", "SourceWebMsg", "mediaKey", "JPEGThumbnail", "thumbnailEncSHA256", "thumbnailSHA256"}
DROPPED_FIELDS |= {"scansSidecar", "midQualityFileEncSHA256", "streamingSidecar", "waveform", "messageSecret"}

PROGRESS_EVERY = 100
"""A handed-over conversation's progress is reported every this many messages (and at its end)."""
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
    history_progress: LiveProgress

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
        counts: dict[str, int] = {}
        ended: set[str] = set()
        for chat, web, end in chunk_items(event, as_dict):
            await self.ctx.sink.push(self._payload("history", {"chat": chat, "message": web}))
            counts[chat] = counts.get(chat, 0) + 1
            if end:
                ended.add(chat)
        self.history_progress.report(self.ctx.progress, event, counts, ended)
        self.log.info(
            "whatsapp.history_sync",
            sync_type=type(data).HistorySyncType.Name(data.syncType),
            chunk=data.chunkOrder,
            progress_percent=data.progress,
            conversations=len(data.conversations),
            messages=sum(counts.values()),
        )

    async def _import_link_history(self) -> None:
        """Import what the link flow's connection received (``history.py``); the secret goes once the
        last message is stored."""
        blob = await self.ctx.secrets.get_optional(SECRET_HISTORY)
        if blob is None:
            return
        try:
            messages = decode_history(blob)
        except (ValueError, TypeError, binascii.Error, zlib.error) as exc:
            self.log.error("whatsapp.link_history_unreadable", error=str(exc))
            await self.ctx.secrets.delete(SECRET_HISTORY)
            return
        totals = Counter(m["chat"] for m in messages)
        done: Counter[str] = Counter()

        async def imported() -> None:
            await self.ctx.secrets.delete(SECRET_HISTORY)
            self.log.info("whatsapp.link_history_imported", messages=len(messages), conversations=len(totals))

        for i, item in enumerate(messages):
            chat = item["chat"]
            last = i == len(messages) - 1
            payload = self._payload("history", {"chat": chat, "message": item.get("message") or {}})
            await self.ctx.sink.push(payload, ack=imported if last else None)
            done[chat] += 1
            if done[chat] == totals[chat]:
                self.ctx.progress.report(chat, done=done[chat], total=totals[chat], finished=True)
            elif done[chat] % PROGRESS_EVERY == 0:
                self.ctx.progress.report(chat, done=done[chat], total=totals[chat])
        if not messages:
            await imported()
