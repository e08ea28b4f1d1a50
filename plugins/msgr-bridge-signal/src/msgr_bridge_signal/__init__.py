"""msgr-bridge Signal connector: the bridge as a linked device of the person's Signal account, through
bbernhard's signal-cli-rest-api (json-rpc mode: a websocket for receiving; polling in normal mode).

Light registration: this module imports only ``config``; ``connector`` loads when the first Signal
account starts, ``link`` when a link flow starts, ``convert`` with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

from .config import CAPABILITIES, SignalSettings

if TYPE_CHECKING:
    from .connector import SignalConnector

__all__ = ["DESCRIPTION", "SignalConnector", "register_connectors"]

DESCRIPTION = ConnectorDescription(
    network="signal",
    display_name="Signal",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=SignalSettings,
    connector="msgr_bridge_signal.connector:SignalConnector",
    link_flow="msgr_bridge_signal.link:SignalLinkFlow",
    convert="msgr_bridge_signal.convert:convert",
)
register_connectors, __getattr__ = plugin_hooks(DESCRIPTION, SignalConnector="msgr_bridge_signal.connector")
