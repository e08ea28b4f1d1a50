"""Matrix connector for msgr-bridge (mautrix): the user's own account over the client-server API.

Rooms and direct chats, formatted messages both ways, edits, redactions, reactions, read receipts, typing,
membership changes, media, and catch-up from a stored sync token with ``/messages`` backfill of gaps.
End-to-end encrypted rooms are not supported (``e2ee=False``).

It registers a light ``ConnectorDescription``: this module imports only ``config`` (settings model and
capabilities, pydantic only); ``connector`` (and mautrix with it) loads when the first Matrix account
starts, ``link`` when a link flow starts, ``convert`` with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgr_bridge import hookimpl
from msgr_bridge.sdk.registration import ConnectorDescription

from .config import CAPABILITIES, MatrixSettings

if TYPE_CHECKING:
    from .connector import MatrixConnector
    from .link import MatrixLinkFlow

__all__ = ["DESCRIPTION", "MatrixConnector", "MatrixLinkFlow", "MatrixSettings", "register_connectors"]

DESCRIPTION = ConnectorDescription(
    network="matrix",
    display_name="Matrix",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=MatrixSettings,
    connector="msgr_bridge_matrix.connector:MatrixConnector",
    link_flow="msgr_bridge_matrix.link:MatrixLinkFlow",
    convert="msgr_bridge_matrix.convert:convert",
)


@hookimpl
def register_connectors() -> list[ConnectorDescription]:
    return [DESCRIPTION]


def __getattr__(name: str) -> Any:
    """``MatrixConnector`` and ``MatrixLinkFlow`` import on first use (PEP 562), not with the plugin."""
    if name == "MatrixConnector":
        from .connector import MatrixConnector

        return MatrixConnector
    if name == "MatrixLinkFlow":
        from .link import MatrixLinkFlow

        return MatrixLinkFlow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
