"""msgr-bridge Microsoft Teams connector (work accounts): msal for sign-in, Microsoft Graph v1.0 over aiohttp.
1:1 and group chats by polling, channel messages with replies as threads, edits, soft deletes, reactions,
mentions, mark read; device-code linking."""

from __future__ import annotations

import msgr_bridge

from .connector import TeamsConnector

__all__ = ["TeamsConnector", "register_connectors"]


@msgr_bridge.hookimpl
def register_connectors() -> list[type[TeamsConnector]]:
    return [TeamsConnector]
