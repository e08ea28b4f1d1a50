"""Every hook a plugin can implement: the whole plugin API surface in one file.

Plugins are discovered through the ``msgr_bridge`` entry-point group (and only those allowed by
``[plugins] allow`` in the config); built-in parts register through the same manager. Hooks are called with
keyword arguments, and an implementation may accept any subset of them::

    from msgr_bridge import hookimpl

    @hookimpl
    def register_connectors():
        return [MyNetworkConnector]

Hooks are for discovery and extension only. Nothing per message goes through ``pm.hook``: connectors and
policy rules are objects the core calls directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .connectors.protocol import ConnectorClass
    from .sdk.registration import ConnectorDescription

PROJECT = "msgr_bridge"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_connectors() -> list[ConnectorClass | ConnectorDescription]:
    """Return the connectors this plugin provides: connector classes (implementations of
    ``msgr_bridge.Connector``), or light ``msgr_bridge.sdk.registration.ConnectorDescription`` entries whose
    connector module (and the network's client library) is imported only when the first account of the
    network starts.

    Each names its ``network``; two plugins registering the same network is a plugin error reported
    at startup, and the first registration wins.
    """
    raise NotImplementedError


@hookspec
def register_policy_rules(config: Any) -> list[Any]:
    """Return outbound policy rules (objects with ``name`` and ``async check(request) -> Decision``).

    ``config`` is the bridge's effective settings, so a rule can read its own section.
    """
    raise NotImplementedError


@hookspec
def startup(bridge: Any) -> None:
    """Called once the bridge is composed (store, bus and connectors ready), before it accepts requests.

    ``bridge`` is the running ``msgr_bridge.app.Bridge``. May return an awaitable, which is awaited.
    """


@hookspec
def shutdown(bridge: Any) -> None:
    """Called when the bridge stops, before the store closes. May return an awaitable, which is awaited."""
