"""``FakeSlack``: the aiohttp server, its request checks, rate limits and injected faults.

Every ``/api/{method}`` request goes through, in order: the vendored description (unknown method or
argument: refused and recorded in ``violations``), authentication (``Authorization: Bearer`` or a ``token``
argument; an ``xoxc-`` token also needs its ``d`` cookie), the token kind (``xapp-`` only opens Socket Mode;
RTM is refused to OAuth user tokens, as Slack does for apps created since 2021), injected faults, the
method's rate limit (when on), then the handler. Everything is recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import sockets
from .entities import TEAM_ID, File, SlackError, Token, bounded, bounded_put
from .model import Workspace
from .spec import methods
from .web import HANDLERS, Call

TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}
TIERS: dict[str, int] = {
    "auth.test": 4,
    "api.test": 4,
    "users.list": 2,
    "users.info": 4,
    "conversations.list": 2,
    "conversations.info": 3,
    "conversations.members": 4,
    "conversations.history": 3,
    "conversations.replies": 3,
    "conversations.mark": 3,
    "chat.update": 3,
    "chat.delete": 3,
    "reactions.add": 3,
    "reactions.remove": 2,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "files.info": 4,
    "apps.connections.open": 1,
    "rtm.connect": 1,
}
"""Slack's published rate-limit tier of each method (per token and method, per minute)."""
POST_MESSAGE_PER_S = 1.0
"""chat.postMessage is "special": about one message per second per channel, short bursts allowed."""
NON_MARKETPLACE_PER_MINUTE = 1
NO_TOKEN = frozenset({"oauth.v2.access"})
"""Methods called with the app's client credentials instead of a token."""
"""conversations.history/replies for apps outside the Marketplace, since May 2025."""


@dataclass
class Recorded:
    method: str
    args: dict[str, Any]
    token: str | None
    status: int = 200
    error: str | None = None


@dataclass
class Fault:
    error: str
    status: int = 200
    retry_after: int | None = None
    times: int = 1


@dataclass
class Limiter:
    """Sliding one-minute windows (and per-second for chat.postMessage) per (token, method[, channel])."""

    windows: dict[tuple[str, ...], deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def check(self, key: tuple[str, ...], count: int, per_s: float) -> int | None:
        """Seconds to wait (Retry-After) when over the limit, else None (and the call is counted)."""
        now = time.monotonic()
        window = self.windows[key]
        while window and now - window[0] >= per_s:
            window.popleft()
        if len(window) >= count:
            return max(1, math.ceil(per_s - (now - window[0])))
        window.append(now)
        return None


class FakeSlack:
    """A wire-level fake of Slack on 127.0.0.1 (``start()``, ``stop()``, or ``async with``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: bool = False,
        non_marketplace: bool = False,
        max_upload_bytes: int = 10 << 20,
    ) -> None:
        self.host, self.port = host, port
        self.workspace = Workspace()
        self.workspace.listeners.append(self._deliver)
        self.rate_limits = rate_limits
        """Enforce the tiers (off by default so tests are not slowed; ``enable_rate_limits()``)."""
        self.non_marketplace = non_marketplace
        """Apply the 1 request/minute, 15 messages limit to conversations.history/replies."""
        self.limits: dict[str, tuple[int, float]] = {}
        """Per-method overrides: method -> (calls, per seconds)."""
        self.max_upload_bytes = max_upload_bytes
        self.ack_timeout: float | None = None
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.sessions: set[sockets.Session] = set()
        self.pushed: list[dict[str, Any]] = []
        self.acks: list[str] = []
        self.unacked: dict[str, list[dict[str, Any]]] = {}
        """Envelopes a closed Socket Mode socket left unacknowledged, per app token (sent to the next one)."""
        self.typing: list[tuple[str, str]] = []
        self._tickets: dict[str, tuple[str, Token]] = {}
        self.apps: dict[str, str] = {}
        """OAuth apps: client_id -> client_secret (``register_app``)."""
        self.approver: str | None = None
        """The user who approves OAuth requests at ``/oauth/v2/authorize`` (None: every request is denied)."""
        self._codes: dict[str, tuple[str, str, str]] = {}
        self._limiter = Limiter()
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def base_url(self) -> str:
        """What ``AsyncWebClient(base_url=...)`` takes."""
        return self.url + "api/"

    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=self.max_upload_bytes + (1 << 16))
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_get("/files-pri/{team_file}/{name}", self._download)
        app.router.add_get("/oauth/v2/authorize", self._authorize)
        app.router.add_get("/link/", self._socket_mode)
        app.router.add_get("/websocket/", self._rtm)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self.workspace.base_url = self.url
        return self

    async def _socket_mode(self, request: web.Request) -> web.StreamResponse:
        return await sockets.serve(self, request, "socket_mode")

    async def _rtm(self, request: web.Request) -> web.StreamResponse:
        return await sockets.serve(self, request, "rtm")

    async def stop(self) -> None:
        """Stop serving (open sockets drop); the workspace is kept, ``start()`` serves it again."""
        for session in list(self.sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- faults ---------------------------------------------------------------------------------------

    def fail(
        self, method: str, error: str, *, status: int = 200, retry_after: int | None = None, times: int = 1
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``error`` (``ratelimited`` gives 429)."""
        if error == "ratelimited":
            status, retry_after = 429, retry_after or 1
        self.faults[method].append(Fault(error, status, retry_after, times))

    def revoke(self, token: str, error: str = "token_revoked", *, close_sockets: bool = True) -> None:
        """Every later call with ``token`` answers ``error``; its user's open sockets close (unless
        ``close_sockets=False``: a token that dies without Slack saying so on the socket)."""
        self.workspace.tokens[token].revoked = error
        for session in list(self.sessions) if close_sockets else ():
            if session.token.value == token or session.token.user_id == self.workspace.tokens[token].user_id:
                asyncio.get_running_loop().create_task(session.ws.close())

    async def send_disconnect(self, reason: str = "refresh_requested", grace_s: float = 0.1) -> None:
        await asyncio.gather(*(sockets.disconnect(s, reason, grace_s) for s in list(self.sessions)))

    def deafen(self, deaf: bool = True) -> None:
        """Open sockets stay open but deliver nothing and answer no ping (new sockets are not affected)."""
        for session in self.sessions:
            session.deaf = deaf

    def enable_rate_limits(self, **overrides: tuple[int, float]) -> None:
        self.rate_limits = True
        self.limits.update({k.replace("_", "."): v for k, v in overrides.items()})

    # --- helpers for handlers -------------------------------------------------------------------------

    def new_file(self, user_id: str, name: str, length: int) -> File:
        file = File(self.workspace._id("F"), user_id, name or "file", length)
        self.workspace.files[file.id] = file
        return file

    def socket_url(self, path: str, token: Token) -> str:
        ticket = secrets.token_urlsafe(16)
        bounded_put(self._tickets, ticket, ("socket_mode" if path == "link" else "rtm", token))
        return f"ws://{self.host}:{self.port}/{path}/?ticket={ticket}"

    def take_ticket(self, ticket: str, kind: str) -> Token | None:
        found = self._tickets.pop(ticket, None)
        if found is None or found[0] != kind or found[1].revoked:
            return None
        return found[1]

    def _deliver(self, event: dict[str, Any], audience: frozenset[str]) -> None:
        for session in list(self.sessions):
            if session.user_id in audience and not session.token.revoked:
                session.offer(event)

    # --- the Web API ----------------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if request.method == "POST" and ctype == "application/json":
            body = await request.read()
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise SlackError("invalid_json")
            args.update(data)
        elif request.method == "POST" and ctype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return args

    def _auth(self, request: web.Request, args: dict[str, Any]) -> Token:
        header = request.headers.get("Authorization", "")
        value = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else args.get("token")
        if not value:
            raise SlackError("not_authed")
        token = self.workspace.tokens.get(str(value))
        if token is None:
            raise SlackError("invalid_auth")
        if token.revoked:
            raise SlackError(token.revoked)
        if token.kind == "session" and request.cookies.get("d") != token.cookie:
            raise SlackError("invalid_auth")
        return token

    async def _api(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        record = Recorded(name, {}, None)
        bounded(self.requests, record)
        try:
            args = await self._args(request)
            record.args = {k: v for k, v in args.items() if k != "token"}
            spec = methods().get(name)
            if spec is None or name not in HANDLERS:
                bounded(self.violations, f"unknown method {name}")
                raise SlackError("unknown_method")
            problem = spec.check(args)
            if problem is not None:
                bounded(self.violations, problem[1])
                raise SlackError(problem[0])
            token = Token("", "", "bot") if name in NO_TOKEN else self._auth(request, args)
            record.token = token.value or None
            self._allowed(name, token)
            self._injected(name)
            self._rate_limit(name, token, args)
            body = await HANDLERS[name](Call(self, name, token, args))
        except SlackError as exc:
            record.status, record.error = exc.status, exc.error
            spec = methods().get(name)
            if spec is not None and not spec.documents(exc.error):
                bounded(self.violations, f"{name} answered undocumented error {exc.error}")
            return web.json_response(
                {"ok": False, "error": exc.error}, status=exc.status, headers=exc.headers
            )
        except ValueError:
            record.status, record.error = 200, "invalid_form_data"
            return web.json_response({"ok": False, "error": "invalid_form_data"})
        return web.json_response({"ok": True, **body})

    def _allowed(self, name: str, token: Token) -> None:
        if name in NO_TOKEN:
            return
        if (token.kind == "app") != (name == "apps.connections.open"):
            raise SlackError("not_allowed_token_type")
        if name == "rtm.connect" and token.kind == "user":
            raise SlackError("not_allowed_token_type")

    def _injected(self, name: str) -> None:
        queue = self.faults.get(name)
        if not queue:
            return
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        raise SlackError(fault.error, status=fault.status, headers=headers)

    def _rate_limit(self, name: str, token: Token, args: dict[str, Any]) -> None:
        if not self.rate_limits:
            return
        key: tuple[str, ...] = (token.value, name)
        if name in self.limits:
            count, per_s = self.limits[name]
        elif name == "chat.postMessage":
            key, (count, per_s) = (*key, str(args.get("channel"))), (3, 3 / POST_MESSAGE_PER_S)
        elif self.non_marketplace and name in ("conversations.history", "conversations.replies"):
            count, per_s = NON_MARKETPLACE_PER_MINUTE, 60.0
        else:
            count, per_s = TIER_PER_MINUTE[TIERS.get(name, 3)], 60.0
        wait = self._limiter.check(key, count, per_s)
        if wait is not None:
            raise SlackError("ratelimited", status=429, headers={"Retry-After": str(wait)})

    # --- OAuth v2 ---------------------------------------------------------------------------------------

    def register_app(self, client_id: str, client_secret: str) -> None:
        self.apps[client_id] = client_secret

    async def _authorize(self, request: web.Request) -> web.Response:
        """Slack's consent page, approved at once by ``approver``: back to ``redirect_uri`` with a code."""
        q = request.query
        redirect = q.get("redirect_uri", "")
        if q.get("client_id") not in self.apps or not redirect.startswith(("http://", "https://")):
            return web.Response(status=400, text="invalid_client_id or redirect_uri")
        sep = "&" if "?" in redirect else "?"
        if self.approver is None:
            raise web.HTTPFound(f"{redirect}{sep}error=access_denied&state={q.get('state', '')}")
        code = secrets.token_urlsafe(12)
        bounded_put(self._codes, code, (q["client_id"], self.approver, redirect))
        raise web.HTTPFound(f"{redirect}{sep}code={code}&state={q.get('state', '')}")

    def oauth_exchange(self, args: dict[str, Any]) -> dict[str, Any]:
        """``oauth.v2.access``: a code (once) for a new user token of the approving user."""
        client_id = str(args.get("client_id") or "")
        if client_id not in self.apps:
            raise SlackError("invalid_client_id")
        if self.apps[client_id] != args.get("client_secret"):
            raise SlackError("bad_client_secret")
        found = self._codes.pop(str(args.get("code") or ""), None)
        if found is None or found[0] != client_id:
            raise SlackError("invalid_code")
        if args.get("redirect_uri") != found[2]:
            raise SlackError("bad_redirect_uri")
        token = self.workspace.issue_token(found[1])
        return {
            "app_id": "A0FAKE0001",
            "authed_user": {
                "id": found[1],
                "scope": "chat:write",
                "access_token": token.value,
                "token_type": "user",
            },
            "team": {"id": TEAM_ID, "name": "fake-workspace"},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    # --- files ----------------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        file = self.workspace.files.get(request.match_info["file_id"])
        if file is None or file.content is not None:
            return web.Response(status=404, text="unknown upload")
        content = bytearray()
        async for chunk in request.content.iter_any():
            content += chunk
            if len(content) > self.max_upload_bytes:
                return web.Response(status=413, text="too large")
        if len(content) != file.length:
            return web.Response(status=400, text=f"expected {file.length} bytes, got {len(content)}")
        file.content = bytes(content)
        return web.Response(text=f"OK - {len(content)}")

    async def _download(self, request: web.Request) -> web.Response:
        team, _, file_id = request.match_info["team_file"].partition("-")
        file = self.workspace.files.get(file_id)
        try:
            token = self._auth(request, {})
        except SlackError:
            return web.Response(status=302, headers={"Location": f"{self.url}?redir=login"})
        if team != TEAM_ID or file is None or file.content is None or token.kind == "app":
            return web.Response(status=404)
        return web.Response(body=file.content, content_type=file.mimetype)


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> Any:
    """``async with running() as fake:`` a started ``FakeSlack``."""
    fake = FakeSlack(**kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
