"""Matrix connector for msgr-bridge (mautrix): the user's own account over the client-server API.

Rooms and direct chats, formatted messages both ways, edits, redactions, reactions, read receipts, typing,
membership changes, media, and catch-up from a stored sync token with ``/messages`` backfill of gaps.
End-to-end encrypted rooms are not supported (``e2ee=False``).

Light registration: this module imports only ``config`` (pydantic only); ``connector`` (and mautrix with it)
loads when the first Matrix account starts, ``client`` when a link flow starts, ``convert`` with the first
payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

from .config import CAPABILITIES, MatrixSettings

if TYPE_CHECKING:
    from .client import MatrixLinkFlow
    from .connector import MatrixConnector

__all__ = ["DESCRIPTION", "MatrixConnector", "MatrixLinkFlow", "MatrixSettings", "register_connectors"]

DESCRIPTION = ConnectorDescription(
    network="matrix",
    display_name="Matrix",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=MatrixSettings,
    connector="msgr_bridge_matrix.connector:MatrixConnector",
    link_flow="msgr_bridge_matrix.client:MatrixLinkFlow",
    convert="msgr_bridge_matrix.convert:convert",
)
register_connectors, __getattr__ = plugin_hooks(
    DESCRIPTION, MatrixConnector="msgr_bridge_matrix.connector", MatrixLinkFlow="msgr_bridge_matrix.client"
)
