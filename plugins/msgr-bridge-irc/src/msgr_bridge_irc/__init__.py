"""msgr-bridge IRC connector (bottom 3): channels and private messages, memberships, SASL/NickServ login,
IRCv3 capabilities when offered, splitting to the 512-byte line limit and client-side flood control.

Light registration: this module imports only ``config`` (settings model and capabilities); ``connector``
(with bottom, the client library) loads when the first IRC account starts, ``link`` when a link flow
starts, ``convert`` with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgr_bridge import hookimpl
from msgr_bridge.sdk.registration import ConnectorDescription

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
    link_flow="msgr_bridge_irc.link:IrcLinkFlow",
    convert="msgr_bridge_irc.convert:convert",
)


@hookimpl
def register_connectors() -> list[ConnectorDescription]:
    return [DESCRIPTION]


def __getattr__(name: str) -> Any:
    """``IrcConnector`` imports on first use (PEP 562), not with the plugin."""
    if name == "IrcConnector":
        from .connector import IrcConnector

        return IrcConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
