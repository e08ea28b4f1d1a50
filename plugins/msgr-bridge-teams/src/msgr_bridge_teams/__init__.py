"""msgr-bridge Microsoft Teams connector (work accounts): msal for sign-in, Microsoft Graph v1.0 over aiohttp.
1:1 and group chats by polling, channel messages with replies as threads, edits, soft deletes, reactions,
mentions, mark read; device-code linking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

from .config import CAPABILITIES, TeamsSettingsModel

if TYPE_CHECKING:
    from .connector import TeamsConnector

__all__ = ["DESCRIPTION", "TeamsConnector", "register_connectors"]

# Light registration: the connector module (and its client library) loads when the first account starts.
DESCRIPTION = ConnectorDescription(
    network="teams",
    display_name="Microsoft Teams",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=TeamsSettingsModel,
    connector="msgr_bridge_teams.connector:TeamsConnector",
    link_callback=True,
)

register_connectors, __getattr__ = plugin_hooks(DESCRIPTION, TeamsConnector="msgr_bridge_teams.connector")
