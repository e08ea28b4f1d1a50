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

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

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
# the hook, and LoopbackConnector / LoopbackNetwork imported on first use (PEP 562), not with the plugin
register_connectors, __getattr__ = plugin_hooks(
    DESCRIPTION,
    LoopbackConnector="msgr_bridge_loopback.connector",
    LoopbackNetwork="msgr_bridge_loopback.network",
)
