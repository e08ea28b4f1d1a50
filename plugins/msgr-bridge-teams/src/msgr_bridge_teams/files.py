"""Sending files: Graph has no upload into a chat message, so a file is put in a drive first and the message
refers to it (``contentType: reference``), as the Teams client does.

- Chats: the sender's OneDrive, folder "Microsoft Teams Chat Files" (found or made once, its id kept for
  the connector's life); the chat's members are then given read access (``invite``, no e-mail sent).
- Channels: the channel's own folder in the team's SharePoint (``filesFolder``); its members already have
  access.

Each file: an item is created in the folder (``POST …/children`` with ``conflictBehavior: rename``), then its
bytes are PUT as they are read from the SDK's media helper (``ctx.media.open``: the size is known before
the first byte and the file is never held whole), up to ``MAX_BYTES`` (Graph's limit for a simple upload;
larger files would need an upload session, not built). The message gets one ``reference`` attachment per
file, named by the GUID in the item's eTag, and an ``<attachment id>`` tag in its body.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from msgr_bridge import OutboundMessage, PermanentError

from .config import MAX_BYTES
from .outbound import conversation_path

if TYPE_CHECKING:
    from .connector import TeamsConnector

CHAT_FOLDER = "Microsoft Teams Chat Files"
_GUID = re.compile(r"\{?([0-9A-Fa-f-]{36})\}?")


async def folder_of(c: TeamsConnector, conversation_id: str) -> tuple[str, str]:
    """(drive id, folder item id) where the conversation's files go."""
    known = c.folders.get(conversation_id if "/" in conversation_id else "")
    if known is not None:
        return known
    if "/" in conversation_id:
        item = await c.graph.request("GET", f"{conversation_path(conversation_id)}/filesFolder")
        drive = (item.get("parentReference") or {}).get("driveId") if isinstance(item, dict) else None
        found = (str(drive), str(item.get("id"))) if drive and isinstance(item, dict) else None
    else:
        drive_item = await c.graph.request("GET", "/me/drive")
        drive = drive_item.get("id") if isinstance(drive_item, dict) else None
        listed = await c.graph.pages("/me/drive/root/children", {"$filter": f"name eq '{CHAT_FOLDER}'"}, 1)
        folder = next((i for i in listed if i.get("name") == CHAT_FOLDER), None)
        if folder is None:
            folder = await c.graph.request(
                "POST", "/me/drive/root/children", json={"name": CHAT_FOLDER, "folder": {}}
            )
        found = (str(drive), str(folder.get("id"))) if drive and isinstance(folder, dict) else None
    if found is None:
        raise PermanentError(f"Microsoft Graph gave no drive folder for {conversation_id}")
    c.folders[conversation_id if "/" in conversation_id else ""] = found
    return found


async def upload(c: TeamsConnector, conversation_id: str, message: OutboundMessage) -> list[dict[str, Any]]:
    """Upload every attachment of ``message``; returns its ``reference`` attachments."""
    drive, folder = await folder_of(c, conversation_id)
    refs = []
    for attachment in message.attachments:
        async with c.ctx.media.open(attachment, max_bytes=MAX_BYTES) as stream:
            item = await c.graph.request(
                "POST",
                f"/drives/{drive}/items/{folder}/children",
                json={"name": stream.name, "file": {}, "@microsoft.graph.conflictBehavior": "rename"},
            )
            item_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item_id, str):
                raise PermanentError("Microsoft Graph made no drive item for the file")
            done = await c.graph.request(
                "PUT",
                f"/drives/{drive}/items/{item_id}/content",
                stream=(_Feed(stream.chunks, stream.size), stream.size, stream.mime_type),
            )
            async for _ in stream.chunks:  # aiohttp stops at Content-Length: read to the end (file closed)
                pass
        guid = _GUID.search(str((done or {}).get("eTag", "")))
        if not isinstance(done, dict) or guid is None or not isinstance(done.get("webUrl"), str):
            raise PermanentError("Microsoft Graph answered the upload without eTag or webUrl")
        if "/" not in conversation_id:
            await share(c, conversation_id, drive, item_id)
        name = done.get("name")
        refs.append({"id": guid[1], "contentType": "reference", "contentUrl": done["webUrl"], "name": name})
    return refs


class _Feed:
    """The chunks as aiohttp sends them, ending by itself once ``size`` bytes went out: aiohttp would
    otherwise ask for one more chunk and may cancel that read when Graph's answer arrives, leaving the
    storage reader's file open. The caller reads the media stream to its end afterwards."""

    def __init__(self, chunks: AsyncIterator[bytes], size: int) -> None:
        self.chunks, self.left = chunks, size

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> bytes:
        if self.left <= 0:
            raise StopAsyncIteration
        chunk = await anext(self.chunks)
        self.left -= len(chunk)
        return chunk


async def share(c: TeamsConnector, chat_id: str, drive: str, item_id: str) -> None:
    members = await c.graph.pages(f"/chats/{chat_id}/members", {"$top": "50"}, 1)
    others = [m["userId"] for m in members if isinstance(m.get("userId"), str) and m["userId"] != c.self_id]
    if others:
        await c.graph.request(
            "POST",
            f"/drives/{drive}/items/{item_id}/invite",
            json={
                "recipients": [{"objectId": o} for o in others],
                "roles": ["read"],
                "requireSignIn": True,
                "sendInvitation": False,
            },
        )
