"""Files both ways, through the core's media helper (``ctx.media``): the connector never opens a local file
or fetches a URL of a client's choosing.

Outbound, each attachment is streamed from ``ctx.media.open`` into Slack's external upload
(``files.getUploadURLExternal``, the bytes, ``files.completeUploadExternal`` into the conversation); the
first carries the message's text. Inbound, ``store_file`` streams a file Slack hosts (its ``url_private``,
fetched with the account's token from Slack's own hosts only) into the core's storage; ``InboundFiles``
does that for every file of a message before its payload is pushed (live and catch-up), so ``convert``
only maps file ids to what was stored (the payload's ``media``).

An inbound file is stored once: the file id -> stored URL goes into a bounded state map, so an event
Slack delivers again (or a catch-up overlapping the live stream) reuses it. A file over the size cap is
refused while it is read and the message keeps Slack's URL with a "too large" note in ``media``; a
download that fails transiently (Slack 5xx, a dropped connection) does not hold up or lose the message
either: it keeps Slack's URL with a note, and is not remembered, so a redelivery tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from msgr_bridge.connectors.protocol import MediaAccess, StoredMedia
from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import Attachment
from msgr_bridge.sdk.media import store_inbound_file
from msgr_bridge.sdk.state import BoundedMap

from .client import SlackWeb
from .config import MAX_FILE_BYTES

"""Slack takes files up to 1 GB."""
FILES_PER_MESSAGE = 10
"""Slack shares at most 10 files in one message; more in a payload are left as Slack's references."""
STORED_MAP, STORED_MAX = "stored_files", 10_000
"""State map of file id -> where it was stored, the most recent ``STORED_MAX`` kept."""


def share_ts(file: dict[str, Any], channel: str) -> str | None:
    """The ``ts`` of the message that shared ``file`` in ``channel`` (Slack's ``shares``), if known yet."""
    shares = file.get("shares") or {}
    for where in ("public", "private"):
        found = (shares.get(where) or {}).get(channel) or []
        if found and isinstance(found[0], dict) and isinstance(found[0].get("ts"), str):
            return str(found[0]["ts"])
    return None


async def send_files(
    web: SlackWeb,
    media: MediaAccess,
    channel: str,
    attachments: Sequence[Attachment],
    *,
    text: str,
    thread_ts: str | None,
) -> list[str]:
    """Upload every attachment into ``channel``; the ``ts`` of each file's message, in order."""
    sent = []
    for index, attachment in enumerate(attachments):
        async with media.open(attachment, max_bytes=MAX_FILE_BYTES) as stream:
            file = await web.upload(
                channel,
                stream.name,
                stream.size,
                stream.chunks,
                thread_ts=thread_ts,
                comment=text if index == 0 else "",
            )
        ts = share_ts(file, channel)
        for _ in range(3):  # Slack may share the file a moment after answering
            if ts is not None:
                break
            await asyncio.sleep(0.5)
            ts = share_ts((await web.call("files.info", file=str(file.get("id")))).get("file") or {}, channel)
        if ts is None:
            raise PermanentError(f"Slack did not say where {attachment.name!r} was shared")
        sent.append(ts)
    return sent


async def store_file(web: SlackWeb, media: MediaAccess, attachment: Attachment) -> StoredMedia:
    """An inbound attachment (its ``url`` is Slack's ``url_private``) streamed into the core's storage."""
    return await media.receive(
        web.download(attachment.url or ""),
        name=attachment.name,
        mime_type=attachment.mime_type,
        max_bytes=MAX_FILE_BYTES,
    )


class InboundFiles:
    """Stores the files of inbound messages before their payloads are pushed (see the module docstring)."""

    def __init__(self, web: Callable[[], SlackWeb], media: MediaAccess, stored: BoundedMap, log: Any) -> None:
        self.web, self.media, self.stored, self.log = web, media, stored, log

    async def add(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with ``media`` (where its event's files went), if it has files."""
        if media := await self.store(payload["event"]):
            payload["media"] = media
        return payload

    async def store(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """File id -> ``{"url", "size"}`` (stored) or ``{"note"}`` (kept as Slack's reference), per file."""
        files = event.get("files") if event.get("type") == "message" else None
        if not isinstance(files, list):
            return {}
        media: dict[str, Any] = {}
        for file in files[:FILES_PER_MESSAGE]:
            file_id = file.get("id") if isinstance(file, Mapping) else None
            url = file.get("url_private_download") or file.get("url_private") if file_id else None
            if not isinstance(file_id, str) or not isinstance(url, str) or len(file_id) > 200:
                continue
            name = str(file.get("name") or file.get("title") or "file")
            mime = str(file.get("mimetype") or "application/octet-stream")

            def receive(name: str = name, mime: str = mime, url: str = url) -> Awaitable[StoredMedia]:
                return store_file(self.web(), self.media, Attachment(name=name, mime_type=mime, url=url))

            media[file_id] = await store_inbound_file(
                self.stored,
                file_id,
                receive,
                platform="Slack",
                log=self.log,
                event="slack.file_not_stored",
            )
        return media
