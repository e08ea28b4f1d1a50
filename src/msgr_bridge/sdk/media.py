"""The core's media helper (``ctx.media``): attachments in and out, so connectors never open files or
fetch URLs on their own.

* ``open(attachment, max_bytes=...)`` hands an outbound attachment to a connector as a ``MediaStream``
  (size known, bytes in chunks). A share-link content URL of this bridge (what multipart sends give) is
  streamed from share-link storage. An ``http(s)`` URL elsewhere is fetched only when the operator enables
  ``[media] fetch_remote``, under the address rules of ``sdk.urls`` and ``sdk.fetch``; a body of unknown
  length is spooled (memory up to ``SPOOL_MEMORY_BYTES``, then a temporary file) to learn its size.
  ``file:`` URLs, local paths and anything else are refused (``AttachmentRefused``). Every byte counts
  against ``max_bytes`` while it is read.
* ``receive(chunks, name=..., mime_type=...)`` streams a platform's file into share-link storage (size
  capped while reading) and returns its share-link URL and size.
* ``check_reference(url)`` is what the API checks before it queues a send (422 at once), the same rules
  ``open`` applies later.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ..connectors.protocol import MediaStream, StoredMedia
from ..errors import AttachmentRefused, BridgeError, PermanentError, TransientError
from ..media.storage import TooLarge
from ..schema import Attachment
from .fetch import check_remote_url, fetch_remote
from .urls import REMOTE_SCHEMES, AddressRules, refuse_local_reference, scheme_of

if TYPE_CHECKING:
    from ..media.sharelinks import ShareLinkService
    from .state import BoundedMap

SPOOL_MEMORY_BYTES = 1024 * 1024
"""A remote body without ``Content-Length`` stays in memory up to this size, then goes to a temp file."""
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MediaRules:
    """``[media]`` of the config, as the helper uses it."""

    fetch_remote: bool = False
    addresses: AddressRules = field(default_factory=AddressRules)
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = 60.0
    max_redirects: int = 3

    @classmethod
    def from_settings(cls, media: Any) -> MediaRules:
        return cls(
            fetch_remote=media.fetch_remote,
            addresses=AddressRules.allowing(media.fetch_allow_networks),
            max_bytes=media.fetch_max_bytes,
            timeout_s=media.fetch_timeout_s,
            max_redirects=media.fetch_max_redirects,
        )


SharesProvider = Callable[[], "ShareLinkService | None"]
"""Returns the share-link service once the API has opened storage (None until then)."""


def _too_large(name: str, limit: int) -> AttachmentRefused:
    return AttachmentRefused(
        f"attachment {name!r} is larger than the limit of {limit} bytes",
        hint="send a smaller file, or a share link to it",
    )


def _unusable(name: str, exc: BridgeError) -> BridgeError:
    """A share link or stored file that cannot be used: a permanent refusal (a retry would not help),
    except when storage is unreachable (``StorageUnavailable``, transient)."""
    if isinstance(exc, TransientError):
        return exc
    return AttachmentRefused(f"attachment {name!r}: {exc.message}", hint=exc.hint)


async def _capped(chunks: AsyncIterable[bytes], limit: int, name: str) -> AsyncIterator[bytes]:
    read = 0
    try:
        async for chunk in chunks:
            read += len(chunk)
            if read > limit:
                raise _too_large(name, limit)
            yield chunk
    except AttachmentRefused:
        raise
    except BridgeError as exc:  # e.g. the stored file was deleted behind the bridge's back
        raise _unusable(name, exc) from exc


class Media:
    def __init__(self, rules: MediaRules | None = None, shares: SharesProvider | None = None) -> None:
        self.rules = rules or MediaRules()
        self._shares = shares

    def _service(self) -> ShareLinkService | None:
        if self._shares is None:
            return None
        service = self._shares()
        if service is None:
            raise TransientError("media storage is not open yet", hint="the bridge is still starting")
        return service

    def _limit(self, max_bytes: int | None) -> int:
        return self.rules.max_bytes if max_bytes is None else min(max_bytes, self.rules.max_bytes)

    # --- checks ---------------------------------------------------------------------------------------

    def check_reference(self, url: str | None) -> None:
        """``AttachmentRefused`` for a URL ``open`` would refuse whatever happens later: a local file or
        path, a remote URL while remote fetches are off, or an address literal that may not be reached.
        Network-native references (``mxc://``...) are left to the connector."""
        if url is None:
            return
        service = self._shares() if self._shares is not None else None
        if service is not None and service.token_in(url) is not None:
            return  # ours (even on a loopback base URL); its signature is checked on open
        refuse_local_reference(url)
        if scheme_of(url) in REMOTE_SCHEMES:
            self._check_remote(url)

    def _check_remote(self, url: str) -> None:
        if not self.rules.fetch_remote:
            raise AttachmentRefused(
                f"attachment URL {url!r} is remote, and this bridge does not fetch remote files",
                hint="upload the file (a multipart send); an operator can enable [media] fetch_remote",
            )
        check_remote_url(url, self.rules.addresses)

    # --- out: a stored or remote file handed to a connector ---------------------------------------------

    @asynccontextmanager
    async def open(
        self, attachment: Attachment, *, max_bytes: int | None = None
    ) -> AsyncIterator[MediaStream]:
        url = (attachment.url or "").strip()
        limit = self._limit(max_bytes)
        service = self._service()
        token = service.token_in(url) if service is not None else None
        if service is not None and token is not None:
            yield await self._stored(service, token, attachment, limit)
            return
        refuse_local_reference(url, f"attachment {attachment.name!r}")
        if scheme_of(url) not in REMOTE_SCHEMES:
            raise AttachmentRefused(
                f"attachment {attachment.name!r} has a URL the bridge cannot read ({url!r})",
                hint="upload the file (a multipart send) or send a share link to it",
            )
        self._check_remote(url)
        async with self._remote(url, attachment, limit) as stream:
            yield stream

    async def _stored(
        self, service: ShareLinkService, token: str, attachment: Attachment, limit: int
    ) -> MediaStream:
        try:
            info = await service.view(token, count=False)  # refuses forged, revoked and expired links
        except BridgeError as exc:
            raise _unusable(attachment.name, exc) from exc
        size = info.target.get("size")
        if info.storage_key is None or not isinstance(size, int):
            raise PermanentError(f"share link {info.id} holds no file", hint="attach a file, not a link")
        if size > limit:
            raise _too_large(attachment.name, limit)
        chunks = _capped(service.storage.open(info.storage_key), size, attachment.name)
        return MediaStream(attachment.name, attachment.mime_type, size, chunks)

    @asynccontextmanager
    async def _remote(self, url: str, attachment: Attachment, limit: int) -> AsyncIterator[MediaStream]:
        rules = self.rules
        async with fetch_remote(
            url,
            rules.addresses,
            max_bytes=limit,
            timeout_s=rules.timeout_s,
            max_redirects=rules.max_redirects,
        ) as body:
            if body.size is not None:
                yield MediaStream(attachment.name, attachment.mime_type, body.size, body.chunks)
                return
            async with anyio.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
                size = 0
                async for chunk in body.chunks:  # capped at ``limit`` by the fetch
                    size += len(chunk)
                    await spool.write(chunk)
                await spool.seek(0)
                yield MediaStream(attachment.name, attachment.mime_type, size, _read_back(spool))

    # --- in: a platform's file stored for clients ------------------------------------------------------

    async def receive(
        self, chunks: AsyncIterable[bytes], *, name: str, mime_type: str, max_bytes: int | None = None
    ) -> StoredMedia:
        service = self._service()
        if service is None:
            raise PermanentError(
                "this bridge has no media storage", hint="store media through the API server"
            )
        info = await service.upload(
            "media", chunks, name=name, mime_type=mime_type, max_bytes=self._limit(max_bytes)
        )
        return StoredMedia(url=service.urls(info.id)["url"] + "/content", size=int(info.target["size"]))


async def _read_back(spool: Any) -> AsyncIterator[bytes]:
    while chunk := await spool.read(64 * 1024):
        yield chunk


async def store_inbound_file(
    stored: BoundedMap,
    file_id: str,
    receive: Callable[[], Awaitable[StoredMedia]],
    *,
    platform: str,
    log: Any,
    event: str,
) -> dict[str, Any]:
    """Where one inbound file of a message went: ``{"url", "size"}`` once stored (``receive`` streams it
    through ``ctx.media.receive``), or ``{"note"}`` when the message keeps the platform's reference.

    What is stored, and what is refused as too large, is remembered in ``stored`` (a bounded state map), so
    a redelivered event or an overlapping catch-up never fetches the file again; a transient failure is not
    remembered, so the next delivery tries again. A file not stored is logged as ``event``."""
    known = await stored.get(file_id)
    if isinstance(known, dict):
        return known
    try:
        saved = await receive()
    except (TooLarge, AttachmentRefused) as exc:  # refused while read: the same next time
        outcome: dict[str, Any] = {"note": f"too large, not stored ({platform}'s URL kept): {exc.message}"}
        await stored.set(file_id, outcome)
    except BridgeError as exc:  # the platform or storage failed: the message goes on with its URL
        outcome = {"note": f"not stored ({platform}'s URL kept): {exc.message}"}
    else:
        outcome = {"url": saved.url, "size": saved.size}
        await stored.set(file_id, outcome)
        return outcome
    log.warning(event, file=file_id, error=outcome["note"])
    return outcome
