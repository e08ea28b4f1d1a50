"""msgr-bridge IRC connector (bottom 3): channels and private messages, memberships, SASL/NickServ login,
IRCv3 capabilities when offered, splitting to the 512-byte line limit and client-side flood control.

Light registration: this module imports only ``config``; ``connector`` (with bottom) loads when the first
IRC account starts, ``login`` when a link flow starts, ``convert`` with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

from .config import CAPABILITIES, IrcSettings

if TYPE_CHECKING:
    from .connector import IrcConnector

__all__ = ["DESCRIPTION", "IrcConnector", "IrcSettings", "register_connectors"]

DESCRIPTION = ConnectorDescription(
    network="irc",
    display_name="IRC",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=IrcSettings,
    connector="msgr_bridge_irc.connector:IrcConnector",
    link_flow="msgr_bridge_irc.login:IrcLinkFlow",
    convert="msgr_bridge_irc.convert:convert",
)
register_connectors, __getattr__ = plugin_hooks(DESCRIPTION, IrcConnector="msgr_bridge_irc.connector")
