"""msgr-bridge Telegram connector (Telethon 1.45): a user account through MTProto. Private chats, basic
groups, supergroups, forum topics (as threads) and channels; formatted text, replies, edits, deletes for
everyone, reactions, read markers, typing and membership changes; catch-up after downtime through
``updates.getDifference``. Secret chats are not supported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgr_bridge import hookimpl
from msgr_bridge.sdk.registration import ConnectorDescription

from .config import CAPABILITIES, TelegramSettings

if TYPE_CHECKING:
    from .connector import TelegramConnector

__all__ = ["DESCRIPTION", "TelegramConnector", "register_connectors"]

# Light registration: the connector module (and its client library) loads when the first account starts.
DESCRIPTION = ConnectorDescription(
    network="telegram",
    display_name="Telegram",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=TelegramSettings,
    connector="msgr_bridge_telegram.connector:TelegramConnector",
)


@hookimpl
def register_connectors() -> list[ConnectorDescription]:
    return [DESCRIPTION]


def __getattr__(name: str) -> Any:
    """``TelegramConnector`` imports on first use (PEP 562), not with the plugin."""
    if name == "TelegramConnector":
        from .connector import TelegramConnector

        return TelegramConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
