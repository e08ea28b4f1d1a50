"""msgr-bridge WhatsApp connector (neonize, which carries whatsmeow): a personal WhatsApp account linked as
a companion device by QR code or pairing code, read and written as the person. See docs/networks/whatsapp.md.
"""

from __future__ import annotations

import msgr_bridge

from .connector import WhatsAppConnector

__all__ = ["WhatsAppConnector", "register_connectors"]


@msgr_bridge.hookimpl
def register_connectors() -> list[type[WhatsAppConnector]]:
    return [WhatsAppConnector]
