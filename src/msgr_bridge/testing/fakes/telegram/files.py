"""The fake's files: uploads in parts (``upload.saveFilePart`` / ``saveBigFilePart``), media messages
(``messages.sendMedia``) and downloads in parts (``upload.getFile``), under Telegram's rules.

Uploads: a part is at most 512 KiB, parts of one file (all but the last) have one size, a file is at most
4000 parts; ``InputFile`` is for files up to 10 MiB (its MD5, when given, is checked), ``InputFileBig``
for larger ones. ``sendMedia`` assembles the parts (each one must be there), makes a photo or a document
from them and posts it like ``sendMessage`` (``random_id`` refused twice). Downloads: ``offset`` and
``limit`` are multiples of 1 KiB, ``limit`` divides 1 MiB and a request stays within one 1 MiB block.
``served_bytes`` counts what ``getFile`` handed out (tests check a refused file was not read whole).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon.tl import functions, types

from .messaging import RANDOM_IDS_MAX, _reply_target
from .methods import RpcFailure, me, method, resolve, updates_for
from .world import Channel, now, random_hash

if TYPE_CHECKING:
    from . import Connection, FakeTelegram

PART_MAX = 512 * 1024
PARTS_MAX = 4000
SMALL_FILE_MAX = 10 * 1024 * 1024
PHOTO_MAX = 10 * 1024 * 1024
UPLOADS_MAX = 64
"""Unfinished uploads kept (oldest dropped first), across every user."""
FILES_MAX = 1000
"""Files kept (photos and documents); the oldest are forgotten (their downloads get FILE_ID_INVALID)."""
MIB = 1024 * 1024
CAPTION_MAX = 1024


@dataclass
class StoredFile:
    id: int
    data: bytes
    name: str
    mime_type: str
    photo: bool = False
    attributes: list[Any] = field(default_factory=list)
    access_hash: int = field(default_factory=random_hash)
    file_reference: bytes = field(default_factory=lambda: os.urandom(8))

    def tl_media(self) -> Any:
        """The ``MessageMedia`` a message carrying this file shows."""
        if self.photo:
            size = types.PhotoSize(type="y", w=800, h=600, size=len(self.data))
            photo = types.Photo(
                id=self.id, access_hash=self.access_hash, file_reference=self.file_reference, date=now(),
                sizes=[size], dc_id=2,
            )  # fmt: skip
            return types.MessageMediaPhoto(photo=photo)
        attributes = [types.DocumentAttributeFilename(self.name), *self.attributes]
        document = types.Document(
            id=self.id, access_hash=self.access_hash, file_reference=self.file_reference, date=now(),
            mime_type=self.mime_type, size=len(self.data), dc_id=2, attributes=attributes,
        )  # fmt: skip
        voice = any(isinstance(a, types.DocumentAttributeAudio) and a.voice for a in self.attributes)
        video = any(isinstance(a, types.DocumentAttributeVideo) for a in self.attributes)
        return types.MessageMediaDocument(document=document, voice=voice or None, video=video or None)


class Files:
    def __init__(self) -> None:
        self.uploads: OrderedDict[tuple[int, int], dict[int, bytes]] = OrderedDict()
        self.stored: OrderedDict[int, StoredFile] = OrderedDict()
        self.served_bytes = 0
        self._next = 5000

    def add(
        self,
        data: bytes,
        *,
        name: str,
        mime_type: str,
        photo: bool = False,
        attributes: list[Any] | None = None,
    ) -> StoredFile:
        """A file someone has uploaded (tests post it with ``world.send(..., media=file)``)."""
        self._next += 1
        stored = StoredFile(self._next, data, name, mime_type, photo, list(attributes or []))
        self.stored[stored.id] = stored
        while len(self.stored) > FILES_MAX:
            self.stored.popitem(last=False)
        return stored

    def save_part(self, owner: int, file_id: int, part: int, data: bytes, total: int | None) -> None:
        if (
            not 0 <= part < PARTS_MAX
            or (total is not None and not 0 < total <= PARTS_MAX)
            or part >= (total or PARTS_MAX)
        ):
            raise RpcFailure(400, "FILE_PART_INVALID")
        if not data:
            raise RpcFailure(400, "FILE_PART_EMPTY")
        if len(data) > PART_MAX:
            raise RpcFailure(400, "FILE_PART_TOO_BIG")
        parts = self.uploads.setdefault((owner, file_id), {})
        self.uploads.move_to_end((owner, file_id))
        parts[part] = bytes(data)
        while len(self.uploads) > UPLOADS_MAX:
            self.uploads.popitem(last=False)

    def assemble(self, owner: int, upload: Any) -> bytes:
        """The bytes of an ``InputFile``/``InputFileBig``: every part there, all but the last one size."""
        parts = self.uploads.pop((owner, upload.id), None)
        if parts is None or upload.parts <= 0:
            raise RpcFailure(400, "FILE_PARTS_INVALID")
        missing = [i for i in range(upload.parts) if i not in parts]
        if missing:
            raise RpcFailure(400, f"FILE_PART_{missing[0]}_MISSING")
        if len(parts) != upload.parts:
            raise RpcFailure(400, "FILE_PARTS_INVALID")
        sizes = {len(parts[i]) for i in range(upload.parts - 1)}
        if len(sizes) > 1 or (sizes and len(parts[upload.parts - 1]) > sizes.pop()):
            raise RpcFailure(400, "FILE_PARTS_INVALID")
        data = b"".join(parts[i] for i in range(upload.parts))
        if isinstance(upload, types.InputFile):
            if len(data) > SMALL_FILE_MAX:
                raise RpcFailure(400, "FILE_TOO_BIG_USE_SAVE_BIG")  # the name a real server does not use
            if upload.md5_checksum and upload.md5_checksum != hashlib.md5(data).hexdigest():
                raise RpcFailure(400, "MD5_CHECKSUM_INVALID")
        return data

    def read(self, location: Any, offset: int, limit: int) -> bytes:
        if offset < 0 or offset % 1024:
            raise RpcFailure(400, "OFFSET_INVALID")
        if limit <= 0 or limit % 1024 or MIB % limit or offset // MIB != (offset + limit - 1) // MIB:
            raise RpcFailure(400, "LIMIT_INVALID")
        if not isinstance(location, types.InputDocumentFileLocation | types.InputPhotoFileLocation):
            raise RpcFailure(400, "LOCATION_INVALID")
        stored = self.stored.get(location.id)
        if stored is None or stored.access_hash != location.access_hash:
            raise RpcFailure(400, "FILE_ID_INVALID")
        if stored.photo != isinstance(location, types.InputPhotoFileLocation):
            raise RpcFailure(400, "LOCATION_INVALID")
        chunk = stored.data[offset : offset + limit]
        self.served_bytes += len(chunk)
        return chunk


@method(functions.upload.SaveFilePartRequest, functions.upload.SaveBigFilePartRequest)
async def save_file_part(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    total = getattr(request, "file_total_parts", None)
    fake.files.save_part(viewer.id, request.file_id, request.file_part, request.bytes, total)
    return True


@method(functions.upload.GetFileRequest)
async def get_file(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    me(fake, conn)
    chunk = fake.files.read(request.location, request.offset, request.limit)
    return types.upload.File(type=types.storage.FileUnknown(), mtime=0, bytes=chunk)


@method(functions.messages.SendMediaRequest)
async def send_media(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    where = resolve(fake, viewer, request.peer)
    media = request.media
    if len(request.message) > CAPTION_MAX:
        raise RpcFailure(400, "MEDIA_CAPTION_TOO_LONG")
    if request.random_id in viewer.random_ids:
        raise RpcFailure(500, "RANDOM_ID_DUPLICATE")
    if isinstance(media, types.InputMediaUploadedPhoto):
        data = fake.files.assemble(viewer.id, media.file)
        if len(data) > PHOTO_MAX:
            raise RpcFailure(400, "PHOTO_SAVE_FILE_INVALID")
        stored = fake.files.add(data, name=media.file.name, mime_type="image/jpeg", photo=True)
    elif isinstance(media, types.InputMediaUploadedDocument):
        data = fake.files.assemble(viewer.id, media.file)
        names = [a.file_name for a in media.attributes if isinstance(a, types.DocumentAttributeFilename)]
        others = [a for a in media.attributes if not isinstance(a, types.DocumentAttributeFilename)]
        name = names[0] if names else media.file.name
        stored = fake.files.add(data, name=name, mime_type=media.mime_type, attributes=others)
    else:
        raise RpcFailure(400, "MEDIA_INVALID")
    reply_to, topic = _reply_target(request)
    post = fake.world.send(
        viewer, where, request.message, entities=request.entities, reply_to=reply_to, topic=topic,
        media=stored, origin=conn,
    )  # fmt: skip
    viewer.random_ids[request.random_id] = post
    while len(viewer.random_ids) > RANDOM_IDS_MAX:
        del viewer.random_ids[next(iter(viewer.random_ids))]
    if isinstance(where, Channel):
        update: Any = types.UpdateNewChannelMessage(post.view(viewer.id), where.box.pts, 1)
    else:
        update = types.UpdateNewMessage(post.view(viewer.id), viewer.box.pts, 1)
    return updates_for(
        fake, viewer, where, types.UpdateMessageID(post.id_for(viewer.id), request.random_id), update
    )
