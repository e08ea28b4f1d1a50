"""The HTTP API server (aiohttp), in the bridge's own process and event loop.

This module builds the ``aiohttp.web.Application`` and runs it; routes live in ``routes/``, one module per
resource, each declaring its operations for the OpenAPI document (``/openapi.json``). Middlewares, outermost
first: problem details (every error becomes RFC 9457 JSON), then authentication (bearer tokens, or the web
app's session cookie). The web app itself is served at ``/`` (``static.py``); on a bridge without an owner,
``start`` prints the one-time setup link (``web_session.py``). The composition root (``msgr_bridge.app``)
passes in ``RouteServices`` (``services.py``): each service goes under its own app key, so a route reaches
only the services it calls; ``ApiHost`` is what the server itself needs (the web sign-in is built from it).
``ApiServer.start(tg)`` also starts the event hub (``inbound/hub.py``) in the bridge's task group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from anyio.abc import TaskGroup

from .. import __version__
from ..inbound.hub import EventHub
from ..media.sharelinks import ShareLinkService
from ..media.storage import Storage, open_storage
from ..store.repos.event_log import EventLogRepo
from ..store.web_auth import WebAuthStore
from . import openapi, static
from .auth import TOKEN_CHANGES_KEY, TokenChanges, make_auth_middleware
from .keys import (
    ACCOUNTS_KEY,
    ADMIN_KEY,
    HEALTH_KEY,
    HOOKS_KEY,
    HUB_KEY,
    LINKS_KEY,
    METRICS_KEY,
    OUTBOUND_KEY,
    OUTBOX_KEY,
    QUERIES_KEY,
    SEARCH_KEY,
    SHARES_KEY,
    URLS_KEY,
    WEB_KEY,
)
from .problems import problem_middleware
from .routes import (
    accounts,
    admin,
    conversations,
    events,
    health,
    hooks,
    links,
    messages,
    metrics,
    outbox,
    search,
    sharelinks,
    web_auth,
)  # fmt: skip
from .static import add_static_routes
from .web_session import WebAuth

if TYPE_CHECKING:
    from .services import ApiHost, Metrics, RouteServices

__all__ = ["ApiServer", "build_app"]

ROUTE_MODULES = (
    accounts, links, conversations, messages, search, outbox, events, sharelinks, admin, web_auth, hooks,
)  # fmt: skip
HEALTH_DOCS = [
    openapi.op("GET", "/health", "Liveness, with what is degraded"),
    openapi.op("GET", "/ready", "Readiness: database reachable and connectors started"),
    openapi.op("GET", "/openapi.json", "This document"),
]


def operations() -> list[openapi.Operation]:
    return [*HEALTH_DOCS, *metrics.DOCS, *(o for m in ROUTE_MODULES for o in m.DOCS), *static.DOCS]


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(operations(), __version__))


def build_metrics_app(host: ApiHost, source: Metrics) -> web.Application:
    """The metrics port's application (``[metrics] port``): ``/metrics`` alone, same auth rules."""
    app = web.Application(middlewares=[problem_middleware, make_auth_middleware(host)])
    app[METRICS_KEY] = source
    app.add_routes(metrics.routes)
    return app


def web_auth_of(host: ApiHost) -> WebAuth:
    return WebAuth(WebAuthStore(host.db), host.tenant, host.settings.api.public_base_url)


def build_app(
    host: ApiHost,
    services: RouteServices,
    shares: ShareLinkService | None = None,
    hub: EventHub | None = None,
    web_auth: WebAuth | None = None,
) -> web.Application:
    web_auth = web_auth or web_auth_of(host)
    changes = TokenChanges()
    app = web.Application(
        client_max_size=host.settings.api.max_body_bytes,
        middlewares=[problem_middleware, make_auth_middleware(host, web_auth, changes)],
    )
    app[TOKEN_CHANGES_KEY] = changes
    app[ACCOUNTS_KEY] = services.accounts
    app[LINKS_KEY] = services.links
    if services.outbound is not None:
        app[OUTBOUND_KEY] = services.outbound
    app[QUERIES_KEY] = services.queries
    app[HEALTH_KEY] = services.health
    app[URLS_KEY] = services.urls
    app[OUTBOX_KEY] = services.outbox
    app[ADMIN_KEY] = services.admin
    app[SEARCH_KEY] = services.search
    app[HOOKS_KEY] = services.hooks
    app[METRICS_KEY] = services.metrics
    app[WEB_KEY] = web_auth
    if shares is not None:
        app[SHARES_KEY] = shares
    if hub is not None:
        app[HUB_KEY] = hub
    app.add_routes(health.routes)
    if host.settings.metrics.enabled and host.settings.metrics.port is None:
        app.add_routes(metrics.routes)
    app.router.add_get("/openapi.json", _openapi)
    for module in ROUTE_MODULES:
        app.add_routes(module.routes)
    add_static_routes(app)
    return app


class ApiServer:
    """Start and stop the API on ``host:port``; ``port=0`` picks a free port (see ``bound_port``)."""

    def __init__(self, bridge: ApiHost, services: RouteServices, host: str, port: int) -> None:
        self.bridge = bridge
        self.services = services
        self.host, self.port = host, port
        self.hub = EventHub(
            bridge.bus, EventLogRepo(bridge.db), bridge.tenant, queue_max=bridge.settings.api.event_queue_max
        )
        self.web_auth = web_auth_of(bridge)
        self.shares: ShareLinkService | None = None
        self.storage: Storage | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._metrics_site: web.TCPSite | None = None

    async def start(self, tg: TaskGroup | None = None) -> None:
        from ..media.sharelinks import load_secret

        s: Any = self.bridge.settings
        self.storage = await open_storage(s, credentials=self.bridge.credentials)
        self.shares = ShareLinkService(
            self.bridge.db,
            self.storage,
            await load_secret(s),
            tenant=self.bridge.tenant,
            public_base_url=s.api.public_base_url,
            default_ttl_s=s.api.share_link_ttl_s,
        )
        if tg is not None:
            await tg.start(self.hub.run)
        self._runner = web.AppRunner(
            build_app(self.bridge, self.services, self.shares, self.hub, self.web_auth),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=5.0,
        )
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        m = s.metrics
        if m.enabled and m.port is not None:
            self._metrics_runner = web.AppRunner(
                build_metrics_app(self.bridge, self.services.metrics),
                handle_signals=False,
                access_log=None,
                shutdown_timeout=1.0,
            )
            await self._metrics_runner.setup()
            self._metrics_site = web.TCPSite(self._metrics_runner, m.host, m.port)
            await self._metrics_site.start()
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        await self.web_auth.announce_setup(f"http://{host}:{self.bound_port}")

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port (``[metrics] port``; None: /metrics is on the API's port or off)."""
        server = self._metrics_site._server if self._metrics_site is not None else None
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else None

    @property
    def bound_port(self) -> int:
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.port

    async def stop(self) -> None:
        self.hub.close_streams()  # first: the server's shutdown then has no open stream to wait for
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self.storage is not None:
            await self.storage.aclose()
            self.storage = None
