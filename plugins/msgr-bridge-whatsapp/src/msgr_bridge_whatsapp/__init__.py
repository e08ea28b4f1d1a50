"""msgr-bridge WhatsApp connector (neonize, which carries whatsmeow): a personal WhatsApp account linked as
a companion device by QR code or pairing code, read and written as the person. See docs/networks/whatsapp.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

from .config import CAPABILITIES, WhatsAppSettings

if TYPE_CHECKING:
    from .connector import WhatsAppConnector

__all__ = ["DESCRIPTION", "WhatsAppConnector", "register_connectors"]

# Light registration: the connector module (and its client library) loads when the first account starts.
DESCRIPTION = ConnectorDescription(
    network="whatsapp",
    display_name="WhatsApp",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=WhatsAppSettings,
    connector="msgr_bridge_whatsapp.connector:WhatsAppConnector",
)

register_connectors, __getattr__ = plugin_hooks(
    DESCRIPTION, WhatsAppConnector="msgr_bridge_whatsapp.connector"
)
