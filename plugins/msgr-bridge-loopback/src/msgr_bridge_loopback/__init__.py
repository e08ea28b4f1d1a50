"""The loopback network: msgr-bridge's reference connector and the worked example for plugin authors.

A plugin is a module with hook implementations, registered through the ``msgr_bridge`` entry-point group in
its ``pyproject.toml``::

    [project.entry-points.msgr_bridge]
    loopback = "msgr_bridge_loopback"
"""

from msgr_bridge import hookimpl

from .connector import LoopbackConnector
from .network import LoopbackNetwork

__all__ = ["LoopbackConnector", "LoopbackNetwork", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[LoopbackConnector]]:
    return [LoopbackConnector]
