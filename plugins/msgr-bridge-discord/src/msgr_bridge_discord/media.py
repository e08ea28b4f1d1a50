"""Outbound files through the core's media helper (``ctx.media``): the connector never opens a local file
or fetches a URL itself. Each attachment is streamed from share-link storage (or a remote URL the operator
allowed with ``[media] fetch_remote``) straight into Discord's multipart upload, at most
``max_attachment_bytes`` each; a file that breaks the rules is refused with ``AttachmentRefused``.

Inbound, ``InboundFiles`` streams every attachment of a message (its CDN ``url``, fetched from Discord's
CDN hosts only) into the core's storage (``ctx.media.receive``) before the payload is pushed, live and in
catch-up, so ``convert`` only maps attachment ids to what was stored (the payload's ``media``): Discord's
CDN links expire after about a day. An attachment is stored once (attachment id -> stored URL in a bounded
state map), so a redelivered event or an overlapping catch-up reuses it. One over the size cap is refused
while read and keeps Discord's URL with a "too large" note; a download that fails transiently keeps the
message with Discord's URL and a note, and is not remembered, so a redelivery tries again
(docs/networks/discord.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from msgr_bridge.connectors.protocol import MediaAccess, StoredMedia
from msgr_bridge.errors import PermanentError, TransientError
from msgr_bridge.schema import Attachment
from msgr_bridge.sdk.media import store_inbound_file
from msgr_bridge.sdk.state import BoundedMap

from .client import FilePart


@asynccontextmanager
async def open_files(
    media: MediaAccess, attachments: Sequence[Attachment], max_bytes: int
) -> AsyncIterator[list[FilePart]]:
    """The attachments as (name, chunks) parts, readable inside this block."""
    async with AsyncExitStack() as stack:
        parts: list[FilePart] = []
        for attachment in attachments:
            stream = await stack.enter_async_context(media.open(attachment, max_bytes=max_bytes))
            parts.append((stream.name, stream.chunks))
        yield parts


CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
FILES_PER_MESSAGE = 10
"""Discord carries at most 10 attachments per message; more in a payload keep Discord's URLs."""
STORED_MAP, STORED_MAX = "stored_files", 10_000
"""State map of attachment id -> where it was stored, the most recent ``STORED_MAX`` kept."""


async def download(http: aiohttp.ClientSession, url: str, api_base: str) -> AsyncIterator[bytes]:
    """An attachment from Discord's CDN (or the API's own host: the fake), in chunks. Any other URL is
    refused, so a payload cannot point the bridge elsewhere."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not (
        host in CDN_HOSTS or host == urlsplit(api_base).hostname
    ):
        raise PermanentError(f"{url!r} is not a Discord attachment URL")
    try:
        async with http.get(url) as response:
            if response.status >= 500 or response.status == 429:
                raise TransientError(f"Discord's CDN answered HTTP {response.status} for {url!r}")
            if response.status != 200:
                raise PermanentError(f"Discord's CDN would not give {url!r}: HTTP {response.status}")
            async for chunk in response.content.iter_chunked(64 * 1024):
                yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"downloading {url!r} from Discord failed: {exc}") from None


Download = Callable[[str], AsyncIterator[bytes]]


class InboundFiles:
    """Stores the attachments of inbound messages before their payloads are pushed (module docstring)."""

    def __init__(
        self, download: Download, media: MediaAccess, stored: BoundedMap, max_bytes: int | None, log: Any
    ) -> None:
        self.download, self.media, self.stored, self.max_bytes, self.log = (
            download,
            media,
            stored,
            max_bytes,
            log,
        )

    async def store(self, d: Mapping[str, Any]) -> dict[str, Any]:
        """Attachment id -> ``{"url", "size"}`` (stored) or ``{"note"}`` (kept as Discord's URL)."""
        items = d.get("attachments")
        if not isinstance(items, list):
            return {}
        media: dict[str, Any] = {}
        for item in items[:FILES_PER_MESSAGE]:
            att_id = item.get("id") if isinstance(item, Mapping) else None
            url = item.get("url") if isinstance(item, Mapping) else None
            if not isinstance(att_id, str) or not isinstance(url, str) or len(att_id) > 100:
                continue
            name = item.get("filename") if isinstance(item.get("filename"), str) else att_id
            mime = item.get("content_type") if isinstance(item.get("content_type"), str) else None

            def receive(url: str = url, name: str = name, mime: str | None = mime) -> Awaitable[StoredMedia]:
                return self.media.receive(
                    self.download(url), name=name, mime_type=mime or "application/octet-stream",
                    max_bytes=self.max_bytes,
                )  # fmt: skip

            media[att_id] = await store_inbound_file(
                self.stored,
                att_id,
                receive,
                platform="Discord",
                log=self.log,
                event="discord.file_not_stored",
            )
        return media
