"""Typed keys for what the API application holds: one per service routes use (``services.py``), the event
hub and share links. There is no key for the whole bridge: a route gets only the services it calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..inbound.hub import EventHub
    from ..media.sharelinks import ShareLinkService
    from .services import (
        AccountViews,
        ConnectorHooks,
        Health,
        LinkFlows,
        Metrics,
        Outbound,
        OutboxOps,
        OwnerAdmin,
        Queries,
        SearchIndex,
        UrlCheck,
        WebSignIn,
    )

ACCOUNTS_KEY: web.AppKey[AccountViews] = web.AppKey("accounts")
LINKS_KEY: web.AppKey[LinkFlows] = web.AppKey("links")
OUTBOUND_KEY: web.AppKey[Outbound] = web.AppKey("outbound")
QUERIES_KEY: web.AppKey[Queries] = web.AppKey("queries")
HEALTH_KEY: web.AppKey[Health] = web.AppKey("health")
URLS_KEY: web.AppKey[UrlCheck] = web.AppKey("urls")
OUTBOX_KEY: web.AppKey[OutboxOps] = web.AppKey("outbox")
ADMIN_KEY: web.AppKey[OwnerAdmin] = web.AppKey("admin")
SEARCH_KEY: web.AppKey[SearchIndex] = web.AppKey("search")
HOOKS_KEY: web.AppKey[ConnectorHooks] = web.AppKey("hooks")
METRICS_KEY: web.AppKey[Metrics] = web.AppKey("metrics")
WEB_KEY: web.AppKey[WebSignIn] = web.AppKey("web_auth")
HUB_KEY: web.AppKey[EventHub] = web.AppKey("event_hub")
SHARES_KEY: web.AppKey[ShareLinkService] = web.AppKey("share_links")
