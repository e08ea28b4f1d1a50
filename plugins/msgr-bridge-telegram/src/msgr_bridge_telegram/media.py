"""Telegram media as canonical attachments. Received files are described (name, type, size and Telegram's
id as ``remote_id``), not fetched: the SDK's streaming media helpers slot in here to download them into
media storage, and to upload outbound attachments (``upload.saveFilePart`` / ``messages.sendMedia``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge.schema import Attachment

from .fields import _get, _opt

MEDIA_KINDS = {
    "DocumentAttributeSticker": ("sticker.webp", "image/webp"),
    "DocumentAttributeAudio": ("voice.ogg", "audio/ogg"),
    "DocumentAttributeVideo": ("video.mp4", "video/mp4"),
}


def attachments(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """What a message's media is (name, type, size, Telegram's id); the content is not fetched here."""
    media = message.get("media")
    kind = media.get("_") if isinstance(media, Mapping) else None
    if kind == "MessageMediaPhoto" and isinstance(media, Mapping) and isinstance(media.get("photo"), Mapping):
        photo = media["photo"]
        sizes = [s.get("size") for s in photo.get("sizes") or [] if isinstance(s, Mapping)]
        largest = max((n for n in sizes if type(n) is int and n >= 0), default=None)
        return (
            Attachment(
                name="photo.jpg",
                mime_type="image/jpeg",
                size=largest,
                remote_id=f"photo:{_get(photo, 'id', int)}",
            ),
        )
    if (
        kind != "MessageMediaDocument"
        or not isinstance(media, Mapping)
        or not isinstance(media.get("document"), Mapping)
    ):
        return ()
    document = media["document"]
    name, mime = "file", _opt(document, "mime_type", str) or "application/octet-stream"
    for attribute in document.get("attributes") or []:
        kind = attribute.get("_") if isinstance(attribute, Mapping) else None
        if kind == "DocumentAttributeFilename" and isinstance(attribute.get("file_name"), str):
            name = attribute["file_name"] or name
        elif kind in MEDIA_KINDS and name == "file":
            name = MEDIA_KINDS[kind][0]
    size = _opt(document, "size", int)
    remote = f"document:{_get(document, 'id', int)}"
    return (
        Attachment(
            name=name[:255], mime_type=mime, size=size if size and size >= 0 else None, remote_id=remote
        ),
    )
