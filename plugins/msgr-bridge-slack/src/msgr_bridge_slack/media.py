"""Files both ways, through the core's media helper (``ctx.media``): the connector never opens a local file
or fetches a URL of a client's choosing.

Outbound, each attachment is streamed from ``ctx.media.open`` into Slack's external upload
(``files.getUploadURLExternal``, the bytes, ``files.completeUploadExternal`` into the conversation); the
first carries the message's text. Inbound, ``store_file`` streams a file Slack hosts (its ``url_private``,
fetched with the account's token from Slack's own hosts only) into the core's storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from msgr_bridge.connectors.protocol import MediaAccess, StoredMedia
from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import Attachment

from .client import SlackWeb

MAX_FILE_BYTES = 1024 * 1024 * 1024
"""Slack takes files up to 1 GB."""


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
