"""A remote attachment fetch that cannot be turned against the bridge's own network.

``fetch_remote(url, rules, ...)`` is an async context manager yielding a ``RemoteBody`` whose ``chunks``
stream the file. Before anything is sent the URL must be ``http(s)``; an IP literal host is checked at once,
a name is checked where aiohttp resolves it (``CheckedResolver``): every address it resolves to must pass
``AddressRules``, and the connection goes to those checked addresses (there is no second lookup a DNS
rebinding could answer differently). No DNS cache, no proxy from the environment. Redirects are followed
by hand, at most ``max_redirects``, each target checked like the first. The size limit is checked against
``Content-Length`` before reading and against the bytes read while reading: the fetch stops at the first
chunk past the limit.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from ..errors import AttachmentRefused, PermanentError, TransientError
from .urls import REMOTE_SCHEMES, AddressRules, literal_address

CHUNK = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class CheckedResolver(AbstractResolver):
    """aiohttp's threaded resolver, refusing a name when any address it resolves to is not allowed."""

    def __init__(self, rules: AddressRules) -> None:
        self._inner = ThreadedResolver()
        self._rules = rules

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._rules.check(result["host"], host)
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class RemoteBody:
    url: str
    """Where the body came from (after redirects)."""
    size: int | None
    """``Content-Length`` when the server sent one."""
    mime_type: str | None
    chunks: AsyncIterator[bytes]


def check_remote_url(url: str | URL, rules: AddressRules) -> URL:
    """The URL parsed, when its scheme is http(s) and an IP-literal host is an allowed address."""
    parsed = URL(url) if isinstance(url, str) else url
    if parsed.scheme not in REMOTE_SCHEMES or not parsed.host:
        raise AttachmentRefused(
            f"attachment URL {str(url)!r} is not an http(s) URL",
            hint="remote attachments are fetched over http or https only",
        )
    literal = literal_address(parsed.host)
    if literal is not None:
        rules.check(literal, parsed.host)
    return parsed


def _too_large(url: str, limit: int) -> AttachmentRefused:
    return AttachmentRefused(
        f"the attachment at {url} is larger than the limit of {limit} bytes",
        hint="send a smaller file, or a share link to it",
    )


async def _capped(response: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes]:
    read = 0
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            read += len(chunk)
            if read > limit:
                raise _too_large(str(response.url), limit)
            yield chunk
    except aiohttp.ClientError as exc:
        raise TransientError(f"reading the attachment at {response.url} failed: {exc!r}") from exc


@asynccontextmanager
async def fetch_remote(
    url: str, rules: AddressRules, *, max_bytes: int, timeout_s: float, max_redirects: int
) -> AsyncIterator[RemoteBody]:
    target = check_remote_url(url, rules)
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(rules), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10.0))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
        for _ in range(max_redirects + 1):
            try:
                response = await session.get(target, allow_redirects=False)
            except aiohttp.ClientError as exc:
                raise TransientError(f"fetching the attachment at {target} failed: {exc!r}") from exc
            try:
                if response.status in REDIRECTS and "Location" in response.headers:
                    target = check_remote_url(target.join(URL(response.headers["Location"])), rules)
                    continue
                if response.status >= 400:
                    kind = (
                        TransientError if response.status >= 500 or response.status == 429 else PermanentError
                    )
                    raise kind(f"fetching the attachment at {target} gave HTTP {response.status}")
                size = response.content_length
                if size is not None and size > max_bytes:
                    raise _too_large(str(target), max_bytes)
                yield RemoteBody(str(target), size, response.content_type, _capped(response, max_bytes))
                return
            finally:
                response.close()  # never drains an unread body: the connection goes
        raise AttachmentRefused(
            f"the attachment at {url} redirected more than {max_redirects} times",
            hint="give the file's final URL",
        )
