"""Telegram media as canonical attachments, and the connector's side of moving their bytes.

Inbound, ``MediaStore.keep`` downloads a message's photo or document (``transfer.download``) straight into
the core's storage (``ctx.media.receive``, capped at ``max_file_bytes`` while reading; a file announced
larger is not downloaded at all) and records the share-link URL and size in the payload (``file``);
``attachments`` then describes the attachment by that URL. The SDK's ``store_inbound_file`` remembers each
file id's outcome, so a file seen live, caught up and imported is fetched once. A file that could not be
stored stays a description (name, type, size, Telegram's id as ``remote_id``) and the message still
arrives. Outbound,
``MediaStore.send`` streams each attachment from ``ctx.media.open`` into ``transfer.upload``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from telethon import TelegramClient, errors
from telethon.tl import functions, types

from msgr_bridge.connectors.protocol import StoredMedia
from msgr_bridge.errors import AttachmentRefused, PermanentError, TransientError
from msgr_bridge.schema import Attachment, OutboundMessage, SendResult
from msgr_bridge.sdk.media import store_inbound_file

from . import transfer
from .client import already_sent, outgoing_text, random_id, reply_header, sent_id
from .fields import _get, _opt

if TYPE_CHECKING:
    from .connector import TelegramConnector

MAX_CAPTION = 1024

MEDIA_KINDS = {
    "DocumentAttributeSticker": ("sticker.webp", "image/webp"),
    "DocumentAttributeAudio": ("voice.ogg", "audio/ogg"),
    "DocumentAttributeVideo": ("video.mp4", "video/mp4"),
}


STORED_MAP, STORED_MAX = "stored_files", 10_000
"""State map of Telegram file id -> where it was stored (``sdk.media.store_inbound_file``)."""


class MediaStore:
    def __init__(self, ctx: Any, max_bytes: int, client: Callable[[], TelegramClient], log: Any) -> None:
        self.ctx, self.max_bytes, self.client, self.log = ctx, max_bytes, client, log
        self.stored = ctx.state.map(STORED_MAP, max_entries=STORED_MAX)

    async def keep(self, message: Any, payload: dict[str, Any]) -> None:
        """Store the file ``message`` carries (once per file, live or caught up) and name where it went in
        ``payload["file"]``: ``{"url", "size"}``, or ``{"note"}`` when it stays a description."""
        found = transfer.file_of(message)
        if found is None:
            return
        file, announced = found
        described = attachments(payload.get("update", {}).get("message") or {})
        name, mime = (described[0].name, described[0].mime_type) if described else ("file", None)

        async def receive() -> StoredMedia:
            if announced is not None and announced > self.max_bytes:
                raise AttachmentRefused(f"attachment {name!r} is larger than {self.max_bytes} bytes")
            stored: StoredMedia = await self.ctx.media.receive(
                transfer.download(self.client(), file),
                name=name,
                mime_type=mime or "application/octet-stream",
                max_bytes=self.max_bytes,
            )
            return stored

        kind = "photo" if isinstance(file, types.Photo) else "document"
        payload["file"] = await store_inbound_file(
            self.stored, f"{kind}:{file.id}", receive, platform="Telegram", log=self.log,
            event="telegram.file_not_stored",
        )  # fmt: skip

    async def send(self, attachment: Attachment, post: Callable[[Any], Awaitable[Any]]) -> Any:
        """Upload ``attachment`` from the core's media helper, then ``post(input_media)``."""
        async with self.ctx.media.open(attachment, max_bytes=self.max_bytes) as stream:
            handle = await transfer.upload(self.client(), stream)
            return await post(transfer.input_media(stream, handle))


async def send_files(conn: TelegramConnector, conversation_id: str, message: OutboundMessage) -> SendResult:
    """One Telegram message per file (streamed from ``ctx.media``), the text as the first one's
    caption; each has its own ``random_id`` (from the transaction id), so a retry skips what went out."""
    peer = await conn._peer(conversation_id)
    text, entities = outgoing_text(message) if message.text or message.formatted else ("", [])
    if len(text) > MAX_CAPTION:
        raise PermanentError(
            f"a caption is at most {MAX_CAPTION} characters on Telegram, this one has {len(text)}",
            hint="send the text and the file as two messages",
        )
    first: SendResult | None = None
    for index, attachment in enumerate(message.attachments):
        key = message.txn_id if index == 0 else f"{message.txn_id}/file{index}"
        caption, marks = (text, entities) if index == 0 else ("", [])
        rid = random_id(key)
        conn.router.expect(rid, message.txn_id)

        async def post(media: Any, caption: str = caption, marks: list[Any] = marks, rid: int = rid) -> Any:
            request = functions.messages.SendMediaRequest(
                peer, media, caption, random_id=rid, reply_to=reply_header(message), entities=marks or None
            )
            return await conn._call("send a file", request, peer)

        try:
            result = await conn.files.send(attachment, post)
        except TransientError as exc:
            if not isinstance(exc.__cause__, errors.RandomIdDuplicateError):
                raise
            if index == 0:  # sent by an earlier attempt whose answer was lost
                first = await already_sent(conn._client(), peer, text, message.txn_id)
            continue
        sent = sent_id(result, rid)
        conn.router.sent(conversation_id, sent, message.txn_id)
        first = first or SendResult(remote_id=str(sent))
    assert first is not None  # attachments is not empty
    return first


def attachments(message: Mapping[str, Any], file: Any = None) -> tuple[Attachment, ...]:
    """What a message's media is; with ``file`` (what ``MediaStore.keep`` stored), where its bytes are."""
    found = _describe(message)
    if found is None:
        return ()
    if isinstance(file, Mapping) and isinstance(file.get("url"), str) and type(file.get("size")) is int:
        found = found.model_copy(update={"url": file["url"], "size": file["size"], "remote_id": None})
    return (found,)


def _describe(message: Mapping[str, Any]) -> Attachment | None:
    media = message.get("media")
    kind = media.get("_") if isinstance(media, Mapping) else None
    if kind == "MessageMediaPhoto" and isinstance(media, Mapping) and isinstance(media.get("photo"), Mapping):
        photo = media["photo"]
        sizes = [s.get("size") for s in photo.get("sizes") or [] if isinstance(s, Mapping)]
        largest = max((n for n in sizes if type(n) is int and n >= 0), default=None)
        return Attachment(
            name="photo.jpg",
            mime_type="image/jpeg",
            size=largest,
            remote_id=f"photo:{_get(photo, 'id', int)}",
        )
    if (
        kind != "MessageMediaDocument"
        or not isinstance(media, Mapping)
        or not isinstance(media.get("document"), Mapping)
    ):
        return None
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
    return Attachment(
        name=name[:255], mime_type=mime, size=size if size and size >= 0 else None, remote_id=remote
    )
