"""msgr-bridge Discord connector: a bot token, the gateway (RESUME, resync from history) and the REST API
over aiohttp; sends as the person through channel webhooks where the operator allows it.

Light registration: this module imports only ``config``; ``connector`` loads when the first Discord
account starts, ``link`` when a link flow starts, ``convert`` (with mistune) with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

from .config import CAPABILITIES, DiscordSettings

if TYPE_CHECKING:
    from .connector import DiscordConnector

__all__ = ["DESCRIPTION", "DiscordConnector", "register_connectors"]

DESCRIPTION = ConnectorDescription(
    network="discord",
    display_name="Discord",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=DiscordSettings,
    connector="msgr_bridge_discord.connector:DiscordConnector",
    link_flow="msgr_bridge_discord.link:DiscordLinkFlow",
    convert="msgr_bridge_discord.convert:convert",
)
register_connectors, __getattr__ = plugin_hooks(DESCRIPTION, DiscordConnector="msgr_bridge_discord.connector")
