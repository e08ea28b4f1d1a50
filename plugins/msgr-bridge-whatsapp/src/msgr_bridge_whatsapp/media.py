"""Files both ways through the core's media helper (``ctx.media``): the connector never opens a local file
or fetches a URL itself.

Outbound, an attachment is streamed from ``ctx.media.open`` (capped at ``media_max_bytes`` while it is
read) and uploaded with neonize, which takes the whole file at once (whatsmeow encrypts it before upload);
the message that shares it is built by ``outgoing.media_message``. Inbound, a file is downloaded with
neonize (decrypted by whatsmeow) and streamed into the core's storage with ``ctx.media.receive``; the
payload records where it was stored. A file larger than the limit, or a bridge without media storage,
leaves the attachment listed without a URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from msgr_bridge.connectors.protocol import MediaAccess
from msgr_bridge.errors import BridgeError, TransientError
from msgr_bridge.schema import Attachment

from .client import WaClient, WAMessage
from .content import MEDIA_KINDS, unwrap
from .outgoing import media_message, media_type_of

CHUNK = 256 * 1024


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def read_attachment(
    media: MediaAccess, attachment: Attachment, max_bytes: int
) -> tuple[bytes, str, str]:
    """The attachment's bytes (capped by ``ctx.media`` while reading), name and MIME type."""
    async with media.open(attachment, max_bytes=max_bytes) as stream:
        data = bytearray()
        async for chunk in stream.chunks:
            data += chunk
        return bytes(data), stream.name, stream.mime_type


async def upload_message(
    wa: WaClient, media: MediaAccess, attachment: Attachment, *, caption: str, context: Any, max_bytes: int
) -> WAMessage:
    data, name, mime = await read_attachment(media, attachment, max_bytes)
    media_type = media_type_of(mime)
    uploaded = await wa.upload(data, media_type)
    return media_message(uploaded, media_type, name=name, mime_type=mime, caption=caption, context=context)


def media_of(content: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The media part of a message dict (its kind and fields), if it has one."""
    inner = unwrap(content)
    for kind in MEDIA_KINDS:
        if isinstance(inner.get(kind), Mapping):
            return kind, inner[kind]
    return None


async def store_inbound(
    wa: WaClient, media: MediaAccess, message: WAMessage, content: Mapping[str, Any], max_bytes: int, log: Any
) -> list[dict[str, Any]]:
    """Download the message's file and store it; ``[{"url", "size"}]``, or ``[{}]`` when it was not stored."""
    found = media_of(content)
    if found is None:
        return []
    kind, fields = found
    size = int(fields.get("fileLength") or 0)
    if size > max_bytes:
        log.info("whatsapp.media_too_large", kind=kind, size=size, limit=max_bytes)
        return [{}]
    mime = str(fields.get("mimetype") or "application/octet-stream").split(";")[0].strip()
    name = str(fields.get("fileName") or kind.removesuffix("Message"))
    try:
        data = await wa.download(message)
        stored = await media.receive(_chunks(data), name=name, mime_type=mime, max_bytes=max_bytes)
    except TransientError as exc:
        log.warning("whatsapp.media_not_stored", kind=kind, error=str(exc))
        return [{}]
    except BridgeError as exc:  # no media storage, refused by the operator's rules, too large
        log.info("whatsapp.media_not_stored", kind=kind, error=exc.message)
        return [{}]
    return [{"url": stored.url, "size": stored.size}]
