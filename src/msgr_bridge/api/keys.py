"""Typed keys for what the API application holds (the bridge, the event hub, the share-link service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..app import Bridge
    from ..inbound.hub import EventHub
    from ..media.sharelinks import ShareLinkService

BRIDGE_KEY: web.AppKey[Bridge] = web.AppKey("bridge")
HUB_KEY: web.AppKey[EventHub] = web.AppKey("event_hub")
SHARES_KEY: web.AppKey[ShareLinkService] = web.AppKey("share_links")
