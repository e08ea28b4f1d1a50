"""msgr-bridge Telegram connector (Telethon 1.45): a user account through MTProto. Private chats, basic
groups, supergroups, forum topics (as threads) and channels; formatted text, replies, edits, deletes for
everyone, reactions, read markers, typing and membership changes; catch-up after downtime through
``updates.getDifference``. Secret chats are not supported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

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

register_connectors, __getattr__ = plugin_hooks(
    DESCRIPTION, TelegramConnector="msgr_bridge_telegram.connector"
)
