"""msgr-bridge Telegram connector (Telethon 1.45): a user account through MTProto. Private chats, basic
groups, supergroups, forum topics (as threads) and channels; formatted text, replies, edits, deletes for
everyone, reactions, read markers, typing and membership changes; catch-up after downtime through
``updates.getDifference``. Secret chats are not supported."""

from __future__ import annotations

import msgr_bridge

from .connector import TelegramConnector

__all__ = ["TelegramConnector", "register_connectors"]


@msgr_bridge.hookimpl
def register_connectors() -> list[type[TelegramConnector]]:
    return [TelegramConnector]
