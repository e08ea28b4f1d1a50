"""msgr-bridge XMPP connector (slixmpp), network name ``xmpp``.

It registers a light ``ConnectorDescription``: this module imports only ``config`` (settings model and
capabilities); ``connector`` and slixmpp load when the first XMPP account starts, ``link`` when a link flow
starts, ``convert`` with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgr_bridge import hookimpl
from msgr_bridge.sdk.registration import ConnectorDescription

from .config import CAPABILITIES, XmppSettings

if TYPE_CHECKING:
    from .connector import XmppConnector

__version__ = "0.1.0"

DESCRIPTION = ConnectorDescription(
    network="xmpp",
    display_name="XMPP",
    version=__version__,
    capabilities=CAPABILITIES,
    settings_model=XmppSettings,
    connector="msgr_bridge_xmpp.connector:XmppConnector",
    link_flow="msgr_bridge_xmpp.link:XmppLinkFlow",
    convert="msgr_bridge_xmpp.convert:convert",
)


@hookimpl
def register_connectors() -> list[ConnectorDescription]:
    return [DESCRIPTION]


def __getattr__(name: str) -> Any:
    """``XmppConnector`` imports on first use (PEP 562), not with the plugin."""
    if name == "XmppConnector":
        from .connector import XmppConnector

        return XmppConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DESCRIPTION", "XmppConnector", "__version__", "register_connectors"]
