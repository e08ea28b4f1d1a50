"""msgr-bridge Discord connector: a bot token, the gateway (RESUME, resync from history) and the REST API
over aiohttp; sends as the person through channel webhooks where the operator allows it."""

from __future__ import annotations

import msgr_bridge

from .connector import DiscordConnector

__all__ = ["DiscordConnector", "register_connectors"]


@msgr_bridge.hookimpl
def register_connectors() -> list[type[DiscordConnector]]:
    return [DiscordConnector]
