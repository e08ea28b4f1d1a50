"""Snapchat, said honestly: a registered network that cannot be bridged, and says why.

People ask for Snapchat, so it is listed (``msgr-bridge plugins``, ``GET /v1/networks``) rather than
silently missing. Every capability is false and every call raises ``NotSupported`` with the reason.
"""

from msgr_bridge import hookimpl

from .connector import SnapchatConnector

__all__ = ["SnapchatConnector", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[SnapchatConnector]]:
    return [SnapchatConnector]
