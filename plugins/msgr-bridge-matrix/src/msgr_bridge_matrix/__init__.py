"""Matrix connector for msgr-bridge (mautrix): the user's own account over the client-server API.

Rooms and direct chats, formatted messages both ways, edits, redactions, reactions, read receipts, typing,
membership changes, media, and catch-up from a stored sync token with ``/messages`` backfill of gaps.
End-to-end encrypted rooms are not supported (``e2ee=False``).
"""

from msgr_bridge import hookimpl

from .connector import MatrixConnector
from .link import MatrixLinkFlow

__all__ = ["MatrixConnector", "MatrixLinkFlow", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[MatrixConnector]]:
    return [MatrixConnector]
