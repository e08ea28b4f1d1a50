"""Outbound files: the one place the connector reads an attachment's bytes (where the SDK's media helpers
will plug in). Only ``http(s)`` URLs are fetched, never a local path; private and loopback addresses only
when the operator allowed them (``media_private_ok``, for the bridge's own storage); at most
``max_attachment_bytes`` are read."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlparse

import aiohttp

from msgr_bridge.errors import PermanentError, TransientError
from msgr_bridge.schema import Attachment

from .config import DiscordSettings


async def _is_private(host: str) -> bool:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TransientError(f"cannot resolve {host!r} for an attachment: {exc}") from exc
    return any(not ipaddress.ip_address(info[4][0]).is_global for info in infos)


async def fetch_attachment(
    http: aiohttp.ClientSession, attachment: Attachment, settings: DiscordSettings
) -> tuple[str, bytes]:
    """``(file name, bytes)`` of an outbound attachment, read from its URL with a size cap."""
    url = attachment.url or ""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PermanentError(
            f"attachment {attachment.name!r} has no http(s) URL the Discord connector can read",
            hint="attachments are sent from the bridge's storage or a web URL",
        )
    if not settings.media_private_ok and await _is_private(parsed.hostname):
        raise PermanentError(
            f"attachment {attachment.name!r}: {parsed.hostname} is a private address",
            hint="set media_private_ok = true to send files from the bridge's own storage",
        )
    limit = settings.max_attachment_bytes
    try:
        async with http.get(url, allow_redirects=False) as resp:
            if resp.status >= 400:
                error = TransientError if resp.status >= 500 else PermanentError
                raise error(f"fetching attachment {attachment.name!r} gave HTTP {resp.status}")
            data = await resp.content.read(limit + 1)
    except aiohttp.ClientError as exc:
        raise TransientError(f"fetching attachment {attachment.name!r} failed: {exc!r}") from exc
    if len(data) > limit:
        raise PermanentError(f"attachment {attachment.name!r} is larger than {limit} bytes, Discord's limit")
    return attachment.name, data
