"""Browser sign-in for the web app: the one-time setup link, session cookies, CSRF and login throttling.

* **Setup link.** While a tenant has no owner, each start of the API makes a fresh random setup token (in
  memory only) and prints ``<base>/#setup=<token>`` (stdout and the log line ``web.setup_link``). Posting it
  with a name and password to ``/v1/web/setup`` creates the owner once: the token is then forgotten, and a
  second owner is refused anyway.
* **Sessions.** Signing in sets ``msgr_session``: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, and
  ``Secure`` when the request came over HTTPS or ``[api] public_base_url`` is ``https://``. A session acts as
  an ``admin:*`` token of its tenant (``session_token_info``), so every API route works for the owner; API
  bearer tokens keep working as before and take precedence when sent.
* **CSRF.** An unsafe request (anything but GET/HEAD/OPTIONS) authenticated by the cookie must carry
  ``X-CSRF-Token``: an HMAC of the session cookie, given to the page by ``GET /v1/web/session``. A page on
  another site can neither read it nor forge it; its ``Origin``, when sent, must also be this bridge's. The
  event stream's WebSocket upgrade is a GET: its ``Origin`` is checked too.
* **Throttling.** ``LoginThrottle`` allows ``MAX_FAILURES`` failed sign-ins per client address per
  ``WINDOW_S``, and ``GLOBAL_MAX_FAILURES`` from all addresses together; beyond that a sign-in is a 429 with
  ``retry_after``. Its map of addresses is bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from ..errors import DatabaseError
from ..jsonutil import dumps_bytes
from ..store import audit
from ..store.tokens import Action, Scope, TokenInfo
from ..store.web_auth import SESSION_TTL, SessionInfo, WebAuthError, WebAuthStore
from .problems import ApiProblem

log = structlog.get_logger("msgr_bridge.api.web")

COOKIE = "msgr_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FAILURES = 5
GLOBAL_MAX_FAILURES = 50
WINDOW_S = 900.0
MAX_TRACKED = 10_000


def csrf_token(cookie: str) -> str:
    return hmac.new(cookie.encode(), b"msgr-bridge csrf v1", hashlib.sha256).hexdigest()


def session_token_info(info: SessionInfo) -> TokenInfo:
    """What a signed-in owner may do: everything on their tenant (``admin:*``)."""
    return TokenInfo(
        id=f"web-{info.id}",
        tenant=info.tenant,
        name=f"web session of {info.username}",
        user_id=None,
        scopes=(Scope(Action.ADMIN, "*"),),
        created_at=datetime.now(UTC),
        expires_at=info.expires_at,
    )


class LoginThrottle:
    """Failed sign-ins per client address (bounded LRU map) and overall, within a sliding window."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_addr: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def _now(self) -> float:
        return self._clock()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - WINDOW_S:
            q.popleft()

    def check(self, addr: str) -> None:
        """Raise a 429 when ``addr`` (or everyone together) failed too often lately."""
        now = self._now()
        self._trim(self._all, now)
        q = self._by_addr.get(addr)
        if q is not None:
            self._trim(q, now)
        blocked = [x for x in (q, self._all) if x is not None and len(x) >= self._limit(x)]
        if blocked:
            retry = max(1, int(blocked[0][0] + WINDOW_S - now) + 1)
            raise ApiProblem(
                429,
                "too_many_attempts",
                "too many failed sign-ins; wait before trying again",
                hint=f"try again in {retry} seconds",
                retry_after=retry,
            )

    def _limit(self, q: deque[float]) -> int:
        return GLOBAL_MAX_FAILURES if q is self._all else MAX_FAILURES

    def failed(self, addr: str) -> None:
        now = self._now()
        self._all.append(now)
        q = self._by_addr.pop(addr, None) or deque(maxlen=MAX_FAILURES)
        q.append(now)
        self._by_addr[addr] = q
        while len(self._by_addr) > MAX_TRACKED:
            self._by_addr.popitem(last=False)
        while len(self._all) > GLOBAL_MAX_FAILURES:
            self._all.popleft()

    def succeeded(self, addr: str) -> None:
        self._by_addr.pop(addr, None)


class WebAuth:
    """The API's side of browser sign-in (one per running API)."""

    def __init__(self, store: WebAuthStore, tenant: str, public_base_url: str | None = None) -> None:
        self.store, self.tenant = store, tenant
        self.public_base_url = public_base_url
        self.throttle = LoginThrottle()
        self._setup_token: str | None = None
        self.setup_link: str | None = None
        """The link printed at start while there is no owner (None once used, or with an owner)."""

    async def announce_setup(self, base_url: str) -> str | None:
        """When the tenant has no owner: make a fresh setup token and print its link (returned too)."""
        try:
            owner = await self.store.owner(self.tenant)
        except (DatabaseError, SQLAlchemyError, OSError) as exc:  # the API still starts; say why no link
            log.error("web.setup_link_unavailable", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            return None
        if owner is not None:
            self._setup_token = self.setup_link = None
            return None
        self._setup_token = secrets.token_urlsafe(24)
        base = (
            self.public_base_url
            if self.public_base_url and not self.public_base_url.endswith(":0")
            else base_url
        )
        link = self.setup_link = f"{base.rstrip('/')}/#setup={self._setup_token}"
        log.warning("web.setup_link", link=link, detail="open it once to create the web app's owner login")
        print(f"msgr-bridge: no owner yet; create the web app's login here (works once): {link}", flush=True)
        return link

    def take_setup_token(self, token: str) -> bool:
        """Whether ``token`` is the current setup token; a match consumes it (single use)."""
        current = self._setup_token
        if current is None or not hmac.compare_digest(current.encode(), token.encode()):
            return False
        self._setup_token = None
        return True

    def restore_setup_token(self, token: str) -> None:
        """Put back a token whose owner could not be created (a bad password), so it can be used again."""
        if self._setup_token is None:
            self._setup_token = token

    def secure(self, request: web.Request) -> bool:
        return request.secure or (self.public_base_url or "").startswith("https://")

    def set_cookie(
        self, request: web.Request, response: web.StreamResponse, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure(request),
        )

    def clear_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        self.set_cookie(request, response, "", 0)

    async def from_cookie(self, request: web.Request) -> tuple[SessionInfo, str] | None:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        info = await self.store.session(cookie)
        if info is None or info.tenant != self.tenant:
            return None
        return info, cookie

    def check_request(self, request: web.Request, cookie: str) -> None:
        """CSRF for a cookie-authenticated request: same origin always, the token on unsafe methods."""
        check_origin(request, self.public_base_url)
        if request.method in SAFE_METHODS:
            return
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf_token(cookie).encode()):
            raise ApiProblem(
                403,
                "csrf_token_invalid",
                f"this request needs the {CSRF_HEADER} header of the signed-in page",
                hint="reload the web app; other clients use an API token (Authorization: Bearer mb_...)",
            )

    # --- what the sign-in routes use (``services.WebSignIn``, ``routes/web_auth.py``) -------------------

    def check_origin(self, request: web.Request) -> None:
        check_origin(request, self.public_base_url)

    async def owner_exists(self) -> bool:
        return await self.store.owner(self.tenant) is not None

    async def setup_owner(self, token: str, username: str, password: str) -> bool:
        """Create the owner with the setup token: False when the token is not valid; ``WebAuthError``
        (the token is put back) when the login is refused. The creation is audited."""
        if not self.take_setup_token(token):
            return False
        try:
            await self.store.create_owner(self.tenant, username, password)
        except WebAuthError:
            self.restore_setup_token(token)
            raise
        self.setup_link = None
        async with self.store.db.session() as s:
            await audit.append(s, f"web:{username}", "web.owner.create", self.tenant, {})
        return True

    async def verify(self, username: str, password: str) -> bool:
        return await self.store.verify(self.tenant, username, password)

    async def open_session(
        self, request: web.Request, body: Mapping[str, Any], status: int = 200
    ) -> web.Response:
        """A new session: the JSON answer holds ``body``, the name and the CSRF token, and sets the cookie."""
        cookie, info = await self.store.create_session(self.tenant)
        data = {**body, "username": info.username, "csrf_token": csrf_token(cookie)}
        response = web.Response(body=dumps_bytes(data), status=status, content_type="application/json")
        self.set_cookie(request, response, cookie, int(SESSION_TTL.total_seconds()))
        return response

    async def sign_out(self, request: web.Request, response: web.StreamResponse) -> None:
        """End the request's session (checked like any cookie request) and clear the cookie."""
        found = await self.from_cookie(request)
        if found is not None:
            info, cookie = found
            self.check_request(request, cookie)
            await self.store.end_session(info.id)
        self.clear_cookie(request, response)


def check_origin(request: web.Request, public_base_url: str | None = None) -> None:
    """Refuse a browser request sent from another site (its ``Origin`` names neither this request's host
    nor ``[api] public_base_url``'s)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    allowed = {request.headers.get("Host", request.host)}
    if public_base_url:
        allowed.add(public_base_url.split("://", 1)[-1].split("/", 1)[0])
    if origin.split("://", 1)[-1].rstrip("/") not in allowed:
        raise ApiProblem(
            403,
            "cross_origin_refused",
            f"requests from {origin} are not accepted",
            hint="open the web app from the bridge's own address",
        )
