"""Pure helpers over a WhatsApp message's content, as a dict (``MessageToDict`` of ``waE2E.Message``): JIDs,
the envelopes to unwrap, its text, its quote and mentions, its files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import Attachment

MEDIA_KINDS = {
    "imageMessage": "image",
    "videoMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
    "ptvMessage": "video",
}
WRAPPERS = ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "documentWithCaptionMessage")
Json = Mapping[str, Any]


def as_map(value: Any, what: str) -> Json:
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"WhatsApp payload: {what} is not an object")
    return value


def jid_text(jid: Any) -> str:
    """``user@server`` of a JID dict (``{"User": ..., "Server": ...}``) or of a JID string."""
    if isinstance(jid, str):
        user, _, server = jid.partition("@")
        return f"{user.split(':')[0]}@{server}" if user and server else ""
    if isinstance(jid, Mapping) and jid.get("User") and jid.get("Server"):
        return f"{jid['User']}@{jid['Server']}"
    return ""


def time_of(value: Any) -> datetime:
    seconds = int(value or 0)
    if seconds > 100_000_000_000:  # milliseconds
        seconds //= 1000
    return datetime.fromtimestamp(max(0, seconds), UTC)


def unwrap(message: Json) -> Json:
    """The content inside ephemeral, view-once, document-with-caption and edit envelopes."""
    for _ in range(4):
        for wrapper in (*WRAPPERS, "editedMessage"):
            inner = message.get(wrapper)
            if isinstance(inner, Mapping) and isinstance(inner.get("message"), Mapping):
                message = inner["message"]
                break
        else:
            return message
    return message


def text_of(message: Json) -> str:
    if isinstance(message.get("conversation"), str):
        return str(message["conversation"])
    extended = message.get("extendedTextMessage")
    if isinstance(extended, Mapping):
        return str(extended.get("text") or "")
    for kind in MEDIA_KINDS:
        media = message.get(kind)
        if isinstance(media, Mapping):
            return str(media.get("caption") or "")
    if isinstance(message.get("contactMessage"), Mapping):
        return f"[contact] {message['contactMessage'].get('displayName') or ''}".strip()
    location = message.get("locationMessage")
    if isinstance(location, Mapping):
        return f"[location] {location.get('degreesLatitude')}, {location.get('degreesLongitude')}"
    return ""


def context_of(message: Json) -> Json:
    for value in message.values():
        if isinstance(value, Mapping) and isinstance(value.get("contextInfo"), Mapping):
            return as_map(value["contextInfo"], "contextInfo")
    return {}


def attachments_of(message: Json, stored: Sequence[Any]) -> tuple[Attachment, ...]:
    found = []
    for kind, label in MEDIA_KINDS.items():
        media = message.get(kind)
        if not isinstance(media, Mapping):
            continue
        where = stored[0] if stored and isinstance(stored[0], Mapping) else {}
        mime = str(media.get("mimetype") or "application/octet-stream").split(";")[0].strip()
        extension = mime.rsplit("/", 1)[-1] if "/" in mime else "bin"
        size = int(media.get("fileLength") or 0)
        found.append(
            Attachment(
                name=str(media.get("fileName") or f"{label}.{extension}"),
                mime_type=mime or "application/octet-stream",
                size=int(where.get("size") or size) or None,
                url=where.get("url") if isinstance(where.get("url"), str) else None,
            )
        )
    return tuple(found)
