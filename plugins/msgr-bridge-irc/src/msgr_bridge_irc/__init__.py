"""msgr-bridge IRC connector (bottom 3): channels and private messages, memberships, SASL/NickServ login,
IRCv3 capabilities when offered, splitting to the 512-byte line limit and client-side flood control."""

from __future__ import annotations

import msgr_bridge

from .connector import IrcConnector

__all__ = ["IrcConnector", "register_connectors"]


@msgr_bridge.hookimpl
def register_connectors() -> list[type[IrcConnector]]:
    return [IrcConnector]
