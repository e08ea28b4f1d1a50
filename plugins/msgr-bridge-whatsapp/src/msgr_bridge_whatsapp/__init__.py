"""msgr-bridge WhatsApp connector (neonize, which carries whatsmeow): a personal WhatsApp account linked as
a companion device by QR code or pairing code, read and written as the person. See docs/networks/whatsapp.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgr_bridge import hookimpl
from msgr_bridge.sdk.registration import ConnectorDescription

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


@hookimpl
def register_connectors() -> list[ConnectorDescription]:
    return [DESCRIPTION]


def __getattr__(name: str) -> Any:
    """``WhatsAppConnector`` imports on first use (PEP 562), not with the plugin."""
    if name == "WhatsAppConnector":
        from .connector import WhatsAppConnector

        return WhatsAppConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
