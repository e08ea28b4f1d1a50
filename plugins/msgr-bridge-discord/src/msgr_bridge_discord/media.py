"""Outbound files through the core's media helper (``ctx.media``): the connector never opens a local file
or fetches a URL itself. Each attachment is streamed from share-link storage (or a remote URL the operator
allowed with ``[media] fetch_remote``) straight into Discord's multipart upload, at most
``max_attachment_bytes`` each; a file that breaks the rules is refused with ``AttachmentRefused``.

Inbound files stay Discord's CDN URLs (see docs/networks/discord.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from msgr_bridge.connectors.protocol import MediaAccess
from msgr_bridge.schema import Attachment

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
