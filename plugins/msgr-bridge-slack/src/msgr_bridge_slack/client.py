"""The wire side: slack_sdk's ``AsyncWebClient`` for the Web API (with Slack's errors mapped onto the
bridge's), the external file upload streamed from a byte source, and the real-time socket.

The socket is read here rather than through slack_sdk's ``SocketModeClient``: that client runs every
envelope's listeners in a task of its own (order is lost, and an envelope cannot be acknowledged only once
the bridge committed it) and reconnects on its own schedule; its RTM clients keep class-global callbacks
(v1) or threads (v2). ``Realtime`` is one aiohttp websocket read in order, with pings, a silence deadline
and acknowledgements by ``envelope_id``; both URLs still come from slack_sdk (``apps.connections.open``,
``rtm.connect``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError

from .config import SlackSettings

AUTH_ERRORS = frozenset({"invalid_auth", "token_revoked", "account_inactive", "not_authed", "token_expired"})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
IDLE: dict[str, Any] = {"type": "_idle"}
"""Yielded by ``Realtime.frames`` after each quiet ping interval, so the reader can do periodic work."""
FILE_HOSTS = frozenset({"files.slack.com", "slack-files.com", "files-edge.slack.com"})
RELINK = "relink the Slack account (POST /v1/links) with a fresh token"


def api_error(method: str, exc: SlackApiError) -> Exception:
    """The bridge error for a Slack ``ok: false`` answer (or HTTP error) to ``method``."""
    response = exc.response
    status = response.status_code
    error = response.get("error") if isinstance(response.data, dict) else None
    if status == 429 or error == "ratelimited":
        try:
            retry_after = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            retry_after = 1.0
        return RateLimited(retry_after, f"Slack rate-limited {method}; retry after {retry_after:.0f}s")
    if error in AUTH_ERRORS:
        return AuthenticationFailed(f"Slack refused the account's token ({error})", hint=RELINK)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return TransientError(f"Slack failed {method} ({error or status}); will retry")
    return PermanentError(f"Slack refused {method}: {error or status}")


class SlackWeb:
    """The Web API of one account, through one aiohttp session (closed by ``close``).

    A browser session's ``d`` cookie rides as a default header of that session, never as a request
    header: slack_sdk's debug log prints request headers (it redacts only ``Authorization``).
    """

    def __init__(self, settings: SlackSettings, token: str, cookie: str | None = None) -> None:
        self.settings = settings
        self.http = aiohttp.ClientSession(
            headers={"Cookie": f"d={cookie}"} if cookie else None,
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.web = AsyncWebClient(token=token, base_url=settings.api_url, session=self.http, timeout=30)

    async def call(self, method: str, **args: Any) -> dict[str, Any]:
        """Call ``method``; JSON bodies for chat.*, form bodies otherwise (what slack_sdk does)."""
        try:
            if method.startswith("chat."):
                response = await self.web.api_call(method, json=args)
            else:
                response = await self.web.api_call(
                    method, data={k: v for k, v in args.items() if v is not None}
                )
        except SlackApiError as exc:
            raise api_error(method, exc) from None
        except (aiohttp.ClientError, TimeoutError, SlackClientError) as exc:
            raise TransientError(f"Slack {method} failed: {type(exc).__name__}: {exc}") from None
        data = response.data
        if not isinstance(data, dict):
            raise TransientError(f"Slack {method} answered something other than JSON")
        return data

    async def pages(self, method: str, key: str, *, limit: int = 200, **args: Any) -> AsyncIterator[Any]:
        """Every item under ``key`` across the cursor pages of ``method``."""
        cursor = ""
        for _ in range(10_000):
            data = await self.call(method, limit=limit, cursor=cursor or None, **args)
            for item in data.get(key) or ():
                yield item
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return

    async def upload(
        self,
        channel: str,
        name: str,
        size: int,
        chunks: AsyncIterator[bytes],
        *,
        title: str = "",
        thread_ts: str | None = None,
        comment: str = "",
    ) -> dict[str, Any]:
        """Slack's external upload: get a URL, stream the bytes to it, complete into ``channel``.

        Returns Slack's file object. ``size`` must be exact (Slack checks it against what arrives)."""
        ticket = await self.call("files.getUploadURLExternal", filename=name, length=size)
        try:
            async with self.http.post(str(ticket["upload_url"]), data=chunks) as response:
                if response.status != 200:
                    raise PermanentError(f"Slack refused the upload of {name!r}: HTTP {response.status}")
        except aiohttp.ClientError as exc:
            raise TransientError(f"uploading {name!r} to Slack failed: {exc}") from None
        files = json.dumps([{"id": str(ticket["file_id"]), "title": title or name}])
        done = await self.call(
            "files.completeUploadExternal",
            files=files,
            channel_id=channel,
            thread_ts=thread_ts,
            initial_comment=comment or None,
        )
        found = done.get("files") or [{}]
        return dict(found[0]) if isinstance(found[0], dict) else {}

    async def download(self, url: str) -> AsyncIterator[bytes]:
        """A file Slack hosts (``url_private``), in chunks, with the account's token. Only URLs on the
        Web API's own host or Slack's file hosts are fetched: a payload cannot point the bridge elsewhere."""
        parts = urlsplit(url)
        host, api_host = parts.hostname or "", urlsplit(self.settings.api_url).hostname
        if parts.scheme not in ("https", "http") or not (host == api_host or host in FILE_HOSTS):
            raise PermanentError(f"{url!r} is not a Slack file URL")
        try:
            async with self.http.get(url, headers={"Authorization": f"Bearer {self.web.token}"}) as response:
                if response.status != 200 or response.content_type == "text/html":  # a login page
                    raise PermanentError(f"Slack would not give the file {url!r}: HTTP {response.status}")
                async for chunk in response.content.iter_chunked(64 * 1024):
                    yield chunk
        except aiohttp.ClientError as exc:
            raise TransientError(f"downloading {url!r} from Slack failed: {exc}") from None

    async def close(self) -> None:
        await self.http.close()


class Realtime:
    """One Socket Mode or RTM websocket: ordered frames, pings, a silence deadline, acknowledgements."""

    def __init__(self, http: aiohttp.ClientSession, url: str, kind: str, settings: SlackSettings) -> None:
        self.http, self.url, self.kind, self.settings = http, url, kind, settings
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.last_frame = time.monotonic()
        self._ids = itertools.count(1)

    async def open(self) -> Realtime:
        try:
            self.ws = await self.http.ws_connect(self.url, autoping=False, max_msg_size=4 << 20)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"could not open the Slack {self.kind} socket: {exc}") from None
        self.last_frame = time.monotonic()
        return self

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """JSON frames in order; raises ``TransientError`` when the socket drops or goes silent."""
        ws = self.ws
        assert ws is not None
        while True:
            silent = time.monotonic() - self.last_frame
            if silent >= self.settings.silence_timeout_s:
                raise TransientError(f"the Slack {self.kind} socket stayed silent for {silent:.0f}s")
            try:
                frame = await ws.receive(timeout=self.settings.ping_interval_s)
            except TimeoutError:
                await self._ping()
                yield IDLE
                continue
            if frame.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return
            self.last_frame = time.monotonic()
            if frame.type == aiohttp.WSMsgType.PING:
                await ws.pong(frame.data)
            elif frame.type == aiohttp.WSMsgType.TEXT:
                try:
                    data = json.loads(frame.data)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    yield data

    async def _ping(self) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        try:
            if self.kind == "rtm":
                await ws.send_str(json.dumps({"id": next(self._ids), "type": "ping"}))
            else:
                await ws.ping()
        except (ConnectionError, RuntimeError):
            return

    async def ack(self, envelope_id: str) -> None:
        """Acknowledge a Socket Mode envelope (a closed socket is fine: Slack sends it again)."""
        ws = self.ws
        if ws is not None and not ws.closed:
            try:
                await ws.send_str(json.dumps({"envelope_id": envelope_id}))
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 5)
            except (TimeoutError, ConnectionError):
                return
