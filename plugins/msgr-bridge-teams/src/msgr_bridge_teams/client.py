"""A small Microsoft Graph v1.0 client on aiohttp: bearer tokens from ``Tokens``, Graph's error bodies turned
into the bridge's errors, ``@odata.nextLink`` paging with a page bound.

- 429 and 503 (throttling, with ``Retry-After``) raise ``RateLimited(retry_after)``; other 5xx and connection
  failures ``TransientError``.
- 401 renews the token once and retries; a second 401 is ``AuthenticationFailed``.
- 403 and 404 and other 4xx are ``PermanentError`` with Graph's code and message.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError

from .auth import Tokens
from .config import TeamsSettings

MAX_BODY = 8 * 1024 * 1024
"""Largest Graph answer read (a page of 50 chat messages is well below)."""
MAX_PAGES = 20


@functools.lru_cache(maxsize=8)
def _ssl(ca_file: str | None) -> ssl.SSLContext:
    """One TLS context per trust store, shared by every account (a context holds the parsed CA bundle)."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def _error(body: Any) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))
    return "", ""


class Graph:
    def __init__(self, settings: TeamsSettings, tokens: Tokens) -> None:
        self.settings, self.tokens = settings, tokens
        self.http: aiohttp.ClientSession | None = None
        self.calls = 0
        self.closed = False
        """Set by ``close()`` until ``open()``: a request still in flight then must not reopen a session."""

    async def open(self) -> None:
        self.closed = False
        await self._session()

    async def _session(self) -> None:
        if self.closed:
            raise TransientError("the Teams connection was closed")
        if self.http is None:
            self.http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_ssl(self.settings.ca_file), limit=8),
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_s),
                trust_env=False,
            )

    async def close(self) -> None:
        self.closed = True
        http, self.http = self.http, None
        if http is not None:
            await http.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        stream: tuple[AsyncIterator[bytes], int, str] | None = None,
    ) -> Any:
        """Call Graph (``path`` relative to graph_url, or an absolute ``@odata.nextLink``); returns the JSON
        answer, or None for 204. ``stream`` is a body sent as it is read: (chunks, size, content type); it
        cannot be sent twice, so a 401 then is not retried here (the outbox sends again)."""
        url = path if path.startswith("https://") else self.settings.graph_url + path
        if not url.startswith(self.settings.graph_url + "/"):
            raise PermanentError(f"refusing to follow a Graph link outside {self.settings.graph_url}: {url}")
        for attempt in (1, 2):
            token = await self.tokens.token(force=attempt == 2)
            status, headers, body = await self._send(method, url, params, json, token, stream)
            if status != 401 or stream is not None:
                break
        code, message = _error(body)
        if status == 401:
            raise AuthenticationFailed(
                f"Microsoft Graph refused the Teams account's token: {code} {message}".strip(),
                hint="link the account again",
            )
        if status in (429, 503):
            try:
                wait = float(headers.get("Retry-After", "5"))
            except ValueError:
                wait = 5.0
            raise RateLimited(max(wait, 0.0), f"Microsoft Graph throttled {method} {path}: {status} {code}")
        if status >= 500:
            raise TransientError(f"Microsoft Graph failed {method} {path}: {status} {code} {message}")
        if status >= 400:
            raise PermanentError(f"Microsoft Graph refused {method} {path}: {status} {code}: {message}")
        return body

    async def _send(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        json: Any,
        token: str,
        stream: tuple[AsyncIterator[bytes], int, str] | None = None,
    ) -> tuple[int, Any, Any]:
        await self._session()
        assert self.http is not None
        self.calls += 1
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data: Any = None
        if stream is not None:
            data = stream[0]
            headers |= {"Content-Length": str(stream[1]), "Content-Type": stream[2]}
        try:
            async with self.http.request(
                method, url, params=params, json=json, data=data, headers=headers
            ) as resp:
                raw = await resp.content.read(MAX_BODY + 1)
                if len(raw) > MAX_BODY:
                    raise TransientError(f"Microsoft Graph answered {method} with more than {MAX_BODY} bytes")
                body: Any = None
                if raw and resp.content_type == "application/json":
                    import json as jsonlib

                    try:
                        body = jsonlib.loads(raw)
                    except ValueError:
                        body = None
                return resp.status, resp.headers, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"cannot reach Microsoft Graph ({method}): {exc!r}") from exc

    async def pages(
        self, path: str, params: dict[str, str] | None = None, most: int = MAX_PAGES
    ) -> list[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` (at most ``most`` pages)."""
        items: list[dict[str, Any]] = []
        link: str | None = path
        query = params
        for _ in range(most):
            if link is None:
                break
            page = await self.request("GET", link, params=query)
            query = None  # the next link carries its own query
            values = page.get("value") if isinstance(page, dict) else None
            if isinstance(values, list):
                items += [v for v in values if isinstance(v, dict)]
            nxt = page.get("@odata.nextLink") if isinstance(page, dict) else None
            link = nxt if isinstance(nxt, str) else None
        return items

    async def delta(
        self, link: str, params: dict[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A delta query: every item up to its ``@odata.deltaLink`` (None when the page bound was hit)."""
        items: list[dict[str, Any]] = []
        query = params
        for _ in range(MAX_PAGES):
            page = await self.request("GET", link, params=query)
            query = None
            if not isinstance(page, dict):
                return items, None
            values = page.get("value")
            if isinstance(values, list):
                items += [v for v in values if isinstance(v, dict)]
            final, nxt = page.get("@odata.deltaLink"), page.get("@odata.nextLink")
            if isinstance(final, str):
                return items, final
            if not isinstance(nxt, str):
                return items, None
            link = nxt
        return items, None
