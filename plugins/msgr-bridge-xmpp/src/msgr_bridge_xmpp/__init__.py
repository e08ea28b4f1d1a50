"""msgr-bridge XMPP connector (slixmpp): registers ``XmppConnector`` under the network name ``xmpp``."""

from __future__ import annotations

import msgr_bridge

__version__ = "0.1.0"


@msgr_bridge.hookimpl
def register_connectors() -> list[type[msgr_bridge.BaseConnector]]:
    from .connector import XmppConnector

    return [XmppConnector]


__all__ = ["__version__", "register_connectors"]
