"""msgr-bridge Signal connector: the bridge as a linked device of the person's Signal account, through
bbernhard's signal-cli-rest-api (json-rpc mode: a websocket for receiving; polling in normal mode)."""

from __future__ import annotations

import msgr_bridge

from .connector import SignalConnector

__all__ = ["SignalConnector", "register_connectors"]


@msgr_bridge.hookimpl
def register_connectors() -> list[type[SignalConnector]]:
    return [SignalConnector]
