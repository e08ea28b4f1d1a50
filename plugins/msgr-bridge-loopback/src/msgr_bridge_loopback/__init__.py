"""The loopback network: msgr-bridge's reference connector and the worked example for plugin authors.

A plugin is a module with hook implementations, registered through the ``msgr_bridge`` entry-point group in
its ``pyproject.toml``::

    [project.entry-points.msgr_bridge]
    loopback = "msgr_bridge_loopback"

It registers a light ``ConnectorDescription``: this module imports only ``config`` (settings model and
capabilities); ``connector`` (and ``remote``, the network's client) load when the first loopback account
starts, ``link`` when a link flow starts, ``convert`` with the first payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgr_bridge import hookimpl
from msgr_bridge.sdk.registration import ConnectorDescription

from .config import CAPABILITIES, LoopbackSettings

if TYPE_CHECKING:
    from .connector import LoopbackConnector
    from .network import LoopbackNetwork

__all__ = ["DESCRIPTION", "LoopbackConnector", "LoopbackNetwork", "register_connectors"]

DESCRIPTION = ConnectorDescription(
    network="loopback",
    display_name="Loopback (in-process test network)",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=LoopbackSettings,
    connector="msgr_bridge_loopback.connector:LoopbackConnector",
    link_flow="msgr_bridge_loopback.link:LoopbackLinkFlow",
    convert="msgr_bridge_loopback.convert:convert",
)


@hookimpl
def register_connectors() -> list[ConnectorDescription]:
    return [DESCRIPTION]


def __getattr__(name: str) -> Any:
    """``LoopbackConnector`` and ``LoopbackNetwork`` import on first use (PEP 562), not with the plugin."""
    if name == "LoopbackConnector":
        from .connector import LoopbackConnector

        return LoopbackConnector
    if name == "LoopbackNetwork":
        from .network import LoopbackNetwork

        return LoopbackNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
