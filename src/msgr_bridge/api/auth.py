"""Bearer-token authentication and per-route, per-account scope checks.

Every route except the public ones (``PUBLIC``: health, readiness, the OpenAPI document, public share
links, the web app's files and its sign-in routes) needs ``Authorization: Bearer mb_...`` (a token from
``msgr-bridge tokens create``) or the web app's session cookie (``web_session.py``: an ``admin:*`` session
of the owner, with CSRF checks; a bearer token, when sent, is used instead). Browsers'
``EventSource`` and ``WebSocket`` cannot set headers, so the event stream also accepts ``?access_token=``.

A route states what it needs with ``require(request, action, account_id)``: the token must hold a scope
for that action (``read``, ``send``, ``edit``, ``delete``, ``react``, ``admin``) on that account (or on
``*``); ``admin`` implies every action. A missing or refused token is a 401 (``token_missing``,
``token_unknown``, ``token_expired``, ``token_revoked``); a valid token without the scope is a 403
``scope_missing`` naming the scope it lacks. Another tenant's account answers 404, like a missing one.

Authenticated tokens are cached for ``CACHE_TTL_S`` seconds, so a revocation by another process (``msgr-bridge
tokens revoke``) takes effect within that time, as it does for event streams (``TOKEN_RECHECK_S``); one made
through this process (``DELETE /v1/tokens/{id}``, the web app's sign-out: ``TokenChanges``) takes effect at
once. (It was 2 s: a read of the token per two seconds was a tenth of what a lone send cost, issue 19.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..store.tokens import Action, TokenInfo, TokenStore, hash_token
from ..store.types import utcnow
from .problems import ApiProblem, Handler
from .web_session import session_token_info

if TYPE_CHECKING:
    from .services import ApiHost
    from .web_session import WebAuth

PUBLIC_PREFIXES = ("/s/", "/assets/", "/v1/web/", "/hooks/")
"""``/hooks/``: platforms calling connectors, which check their own secret (``routes/hooks.py``)."""
PUBLIC = frozenset({"/health", "/ready", "/openapi.json", "/metrics", "/"})
OPTIONAL_TOKEN = frozenset({"/health", "/ready", "/metrics"})
"""Public paths that say more to an ``admin`` token: a token sent there is checked like anywhere else
(``/metrics`` itself decides whether it needs one: ``[metrics] auth``)."""
CACHE_TTL_S = 10.0
TOKEN_KEY: web.RequestKey[TokenInfo] = web.RequestKey("token", TokenInfo)
Reauthenticate = Callable[[], Awaitable[TokenInfo]]
REAUTH_KEY: web.RequestKey[Reauthenticate] = web.RequestKey("reauthenticate", object)  # type: ignore[arg-type]
"""Checks the request's token again (through the cache): long-lived streams call it on a timer."""


class TokenChanges:
    """News, inside this process, that a token or a web session may have lost its rights (revoked through
    the API, signed out). The authentication cache forgets what it holds, and event streams check their
    token again at once instead of at their next timer (``routes/events.py``), so their timer can be slow.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self) -> None:
        """Until the next ``changed()`` (one before this call does not count)."""
        await self._changed.wait()


TOKEN_CHANGES_KEY: web.AppKey[TokenChanges] = web.AppKey("token_changes", TokenChanges)


def tokens_changed(request: web.Request) -> None:
    """Tell this app's cache and streams that a token or session may have lost its rights (after the
    change is committed: a check made now must see it)."""
    if (changes := request.app.get(TOKEN_CHANGES_KEY)) is not None:
        changes.changed()


class TokenCache:
    """A short-lived cache in front of ``TokenStore.authenticate`` (one database read per token per TTL).

    Lookups of one token are single-flight: when the entry expires under load, the first request reads the
    database and the others wait for its answer instead of all reading it at once.
    """

    def __init__(
        self, store: TokenStore, ttl_s: float = CACHE_TTL_S, changes: TokenChanges | None = None
    ) -> None:
        self.store, self.ttl_s = store, ttl_s
        self.changes = changes or TokenChanges()
        self._cache: dict[str, tuple[float, int, TokenInfo]] = {}
        self._inflight: dict[str, tuple[int, asyncio.Future[TokenInfo]]] = {}

    async def authenticate(self, token: str, *, fresh: bool = False) -> TokenInfo:
        """The token's info, from the cache unless ``fresh`` (a stream's periodic recheck, which is what
        finds a revocation made by another process: it reads the database, and the cache learns from it)."""
        key = hash_token(token)
        hit = None if fresh else self._cache.get(key)
        now, generation = time.monotonic(), self.changes.generation
        if hit is not None and now - hit[0] < self.ttl_s and hit[1] == generation:
            info = hit[2]
            if info.expires_at is None or info.expires_at > utcnow():
                return info
        inflight = self._inflight.get(key)
        if inflight is not None and inflight[0] == generation and not fresh:
            task = inflight[1]
        else:
            # A task, not a plain await: a requester that hangs up must not fail the others waiting on it.
            # One started before a change may have read the token before it: not shared after it.
            task = asyncio.ensure_future(self.store.authenticate(token))
            self._inflight[key] = (generation, task)
            task.add_done_callback(lambda t: self._store(key, now, generation, t))
        return await asyncio.shield(task)

    def _store(self, key: str, at: float, generation: int, task: asyncio.Future[TokenInfo]) -> None:
        if (inflight := self._inflight.get(key)) is not None and inflight[1] is task:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None or generation != self.changes.generation:
            return
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (at, generation, task.result())


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.path.startswith("/v1/events"):
        return request.query.get("access_token")
    return None


def make_auth_middleware(
    host: ApiHost, web_auth: WebAuth | None = None, changes: TokenChanges | None = None
) -> Middleware:
    cache = TokenCache(TokenStore(host.db), changes=changes)

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPTIONAL_TOKEN:
            if (token := bearer(request)) is not None:
                request[TOKEN_KEY] = await _authenticate(token)
            elif web_auth is not None and (found := await web_auth.from_cookie(request)) is not None:
                request[TOKEN_KEY] = session_token_info(found[0])
            return await handler(request)
        if request.path in PUBLIC or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        token = bearer(request)
        if token is None and web_auth is not None:
            found = await web_auth.from_cookie(request)
            if found is not None:
                session, cookie = found
                web_auth.check_request(request, cookie)
                request[TOKEN_KEY] = session_token_info(session)
                request[REAUTH_KEY] = lambda: _session_again(web_auth, cookie)
                return await handler(request)
        if token is None:
            raise ApiProblem(
                401,
                "token_missing",
                "this endpoint needs an API token",
                hint="send 'Authorization: Bearer mb_...' (create one with `msgr-bridge tokens create`), "
                "or sign in to the web app",
            )
        request[TOKEN_KEY] = await _authenticate(token)
        request[REAUTH_KEY] = lambda: _authenticate(token, fresh=True)
        return await handler(request)

    async def _authenticate(token: str, *, fresh: bool = False) -> TokenInfo:
        info = await cache.authenticate(token, fresh=fresh)
        if info.tenant != host.tenant:
            raise ApiProblem(401, "token_unknown", "unknown API token")
        return info

    return auth_middleware


async def _session_again(web_auth: WebAuth, cookie: str) -> TokenInfo:
    """A streaming session's check on a timer: its session must still exist (not signed out, not expired)."""
    session = await web_auth.store.session(cookie)
    if session is None:
        raise ApiProblem(401, "session_ended", "the web session ended", hint="sign in again")
    return session_token_info(session)


def token_of(request: web.Request) -> TokenInfo:
    return request[TOKEN_KEY]


def is_admin(request: web.Request) -> bool:
    """Whether the request carries an ``admin:*`` token (also on public paths, where a token is optional)."""
    info = request.get(TOKEN_KEY)
    return info is not None and info.allows(Action.ADMIN, None)


def require(request: web.Request, action: Action | str, account_id: str | None = None) -> TokenInfo:
    """The request's token, or a 403 naming the missing scope."""
    info = request[TOKEN_KEY]
    if not info.allows(action, account_id):
        scope = f"{Action(action).value}:{account_id or '*'}"
        raise ApiProblem(
            403,
            "scope_missing",
            f"this token lacks the scope {scope}",
            hint="create a token with that scope (msgr-bridge tokens create --scope ...)",
            scope=scope,
        )
    return info


def readable_accounts(info: TokenInfo, account_ids: list[str]) -> list[str]:
    """The accounts among ``account_ids`` this token may read."""
    return [a for a in account_ids if info.allows(Action.READ, a)]
