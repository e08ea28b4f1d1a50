"""msgr-bridge XMPP connector (slixmpp), network name ``xmpp``.

Light registration: this module imports only ``config``; ``connector`` and slixmpp load when the first XMPP
account starts or a link flow starts, ``convert`` with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

from .config import CAPABILITIES, XmppSettings

if TYPE_CHECKING:
    from .connector import XmppConnector

__version__ = "0.1.0"
__all__ = ["DESCRIPTION", "XmppConnector", "__version__", "register_connectors"]

DESCRIPTION = ConnectorDescription(
    network="xmpp",
    display_name="XMPP",
    version=__version__,
    capabilities=CAPABILITIES,
    settings_model=XmppSettings,
    connector="msgr_bridge_xmpp.connector:XmppConnector",
    link_flow="msgr_bridge_xmpp.connector:XmppLinkFlow",
    convert="msgr_bridge_xmpp.convert:convert",
)
register_connectors, __getattr__ = plugin_hooks(DESCRIPTION, XmppConnector="msgr_bridge_xmpp.connector")
