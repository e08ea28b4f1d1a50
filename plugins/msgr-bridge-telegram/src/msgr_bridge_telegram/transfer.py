"""Files through Telegram, streamed both ways; the bytes come from and go to the core's ``ctx.media``.

Out: ``upload`` reads a ``MediaStream`` and sends it in 512 KiB parts (``upload.saveFilePart``, or
``saveBigFilePart`` above 10 MiB), never holding more than one part; ``input_media`` names the upload as a
photo (JPEG or PNG up to 10 MiB) or a document with its file name (video and voice marked as such), for
``messages.sendMedia``. In: ``download`` yields a message's photo or document in parts (``upload.getFile``
through Telethon's ``iter_download``); the caller streams them into storage, capped while reading.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

from telethon import TelegramClient
from telethon.tl import functions, types

from msgr_bridge.connectors.protocol import MediaStream
from msgr_bridge.errors import AttachmentRefused, TransientError

from .client import wire_errors

PART = 512 * 1024
"""Upload part size: Telegram's largest (every part but the last has this size)."""
SMALL_FILE_MAX = 10 * 1024 * 1024
"""Above this an upload is a "big file" (``saveBigFilePart``, no MD5)."""
TELEGRAM_FILE_MAX = 4000 * PART
"""4000 parts of 512 KiB: Telegram's limit for a (non-premium) account."""
PHOTO_TYPES = frozenset({"image/jpeg", "image/png"})
PHOTO_MAX = 10 * 1024 * 1024
DOWNLOAD_REQUEST = 128 * 1024
"""Bytes per ``upload.getFile`` (divides 1 MiB, as Telegram requires)."""


def random_file_id() -> int:
    return int.from_bytes(os.urandom(8), "little", signed=True)


async def upload(client: TelegramClient, stream: MediaStream) -> types.InputFile | types.InputFileBig:
    """Send ``stream`` to Telegram in parts; the handle ``messages.sendMedia`` refers to."""
    if stream.size <= 0:
        raise AttachmentRefused(f"attachment {stream.name!r} is empty", hint="Telegram refuses empty files")
    if stream.size > TELEGRAM_FILE_MAX:
        raise AttachmentRefused(
            f"attachment {stream.name!r} is larger than Telegram's {TELEGRAM_FILE_MAX} bytes",
            hint="send a share link to it instead",
        )
    big = stream.size > SMALL_FILE_MAX
    total = -(-stream.size // PART)
    file_id, md5 = random_file_id(), hashlib.md5(usedforsecurity=False)
    pending, part, sent = bytearray(), 0, 0

    async def flush(data: bytes) -> None:
        nonlocal part, sent
        if big:
            request: Any = functions.upload.SaveBigFilePartRequest(file_id, part, total, data)
        else:
            md5.update(data)
            request = functions.upload.SaveFilePartRequest(file_id, part, data)
        async with wire_errors("upload a file"):
            if not await client(request):
                raise TransientError(f"Telegram did not take part {part} of {stream.name!r}")
        part, sent = part + 1, sent + len(data)

    async for chunk in stream.chunks:
        pending += chunk
        while len(pending) >= PART:
            await flush(bytes(pending[:PART]))
            del pending[:PART]
    if pending:
        await flush(bytes(pending))
    if sent != stream.size:
        raise AttachmentRefused(
            f"attachment {stream.name!r} had {sent} bytes, not the {stream.size} announced",
            hint="the stored file changed while it was sent; send it again",
        )
    if big:
        return types.InputFileBig(file_id, part, stream.name)
    return types.InputFile(file_id, part, stream.name, md5.hexdigest())


def input_media(stream: MediaStream, handle: Any) -> Any:
    """A photo for JPEG and PNG pictures up to 10 MiB, otherwise a document that keeps its file name."""
    mime = (stream.mime_type or "application/octet-stream").lower()
    if mime in PHOTO_TYPES and stream.size <= PHOTO_MAX:
        return types.InputMediaUploadedPhoto(handle)
    attributes: list[Any] = [types.DocumentAttributeFilename(stream.name)]
    if mime.startswith("video/"):
        attributes.append(types.DocumentAttributeVideo(duration=0, w=0, h=0, supports_streaming=True))
    elif mime in {"audio/ogg", "audio/opus"}:
        attributes.append(types.DocumentAttributeAudio(duration=0, voice=True))
    plain = len(attributes) == 1  # kept as a file, not turned into an animation or a picture
    return types.InputMediaUploadedDocument(handle, mime, attributes, force_file=plain or None)


def file_of(message: Any) -> tuple[Any, int | None] | None:
    """The photo (its largest size) or document a message carries, and its announced size."""
    media = getattr(message, "media", None)
    if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        sizes = [getattr(s, "size", None) for s in media.photo.sizes]
        known = [n for n in sizes if isinstance(n, int)]
        return media.photo, max(known) if known else None
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        return media.document, media.document.size
    return None


async def download(client: TelegramClient, file: Any) -> AsyncIterator[bytes]:
    """A photo's or document's bytes, one ``upload.getFile`` at a time (the next is asked only when the
    caller wants it, so a reader that stops early stops the download)."""
    async with wire_errors("download a file"):
        async for chunk in client.iter_download(file, request_size=DOWNLOAD_REQUEST):
            yield bytes(chunk)
