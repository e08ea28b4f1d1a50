"""Typed keys for what the API application holds: the bridge (``ApiServices``), the event hub, share links."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..inbound.hub import EventHub
    from ..media.sharelinks import ShareLinkService
    from .services import ApiServices
    from .web_session import WebAuth

BRIDGE_KEY: web.AppKey[ApiServices] = web.AppKey("bridge")
HUB_KEY: web.AppKey[EventHub] = web.AppKey("event_hub")
SHARES_KEY: web.AppKey[ShareLinkService] = web.AppKey("share_links")
WEB_KEY: web.AppKey[WebAuth] = web.AppKey("web_auth")
