"""Light registration: a plugin describes its network without importing the network's client library.

``register_connectors()`` may return a ``ConnectorDescription`` instead of a connector class::

    @hookimpl
    def register_connectors():
        return [
            ConnectorDescription(
                network="irc",
                display_name="IRC",
                version="0.2.0",
                capabilities=CAPABILITIES,             # from a light module (config.py)
                settings_model=IrcSettings,            # from the same light module
                connector="msgr_bridge_irc.connector:IrcConnector",
                link_flow="msgr_bridge_irc.link:IrcLinkFlow",
                convert="msgr_bridge_irc.convert:convert",
            )
        ]

The core sees the name, capabilities and settings model at once; ``connector`` is imported when the first
account of the network starts, ``link_flow`` when a link flow starts, ``convert`` with the first payload.
So the plugin's ``__init__`` must import only light modules (no client library). The registry holds a
stand-in class (``lazy_connector``) with the same class attributes, so the core uses both kinds alike.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from pydantic import BaseModel

from ..connectors.protocol import Connector, ConnectorClass, ConnectorContext, LinkFlow, RawPayload
from ..errors import PluginError
from ..hookspecs import hookimpl
from ..schema import Account, Capabilities, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorDescription:
    network: str
    display_name: str
    capabilities: Capabilities
    connector: str
    """``"package.module:Class"``: the connector class, imported when the first account starts."""
    version: str = "0"
    settings_model: type[BaseModel] | None = None
    link_flow: str | None = None
    """``"package.module:callable"`` taking the network defaults and returning a ``LinkFlow`` (default: the
    connector class's ``link_flow``, which imports the connector)."""
    convert: str | None = None
    """``"package.module:function"``: the pure conversion (default: the connector class's)."""
    link_callback: bool = False
    """The link flow takes an OAuth redirect on the bridge (``linking``: ``link_callback_url``)."""

    def problem(self) -> str | None:
        """Why this description is unusable, or None."""
        if not self.network.isidentifier():
            return f"network must be a non-empty identifier, got {self.network!r}"
        if not isinstance(cast(Any, self.capabilities), Capabilities):
            return f"{self.network}: capabilities must be a msgr_bridge.Capabilities instance"
        for name in ("connector", "link_flow", "convert"):
            ref = getattr(self, name)
            if ref is not None and (ref.count(":") != 1 or not all(ref.split(":"))):
                return f"{self.network}: {name} must look like 'package.module:name', got {ref!r}"
        return None


def plugin_hooks(
    description: ConnectorDescription, **lazy: str
) -> tuple[Callable[[], list[ConnectorDescription]], Callable[[str], Any]]:
    """A plugin ``__init__``'s hook and module ``__getattr__``: ``register_connectors`` returns
    ``description``; each ``lazy`` name (``IrcConnector="msgr_bridge_irc.connector"``) is imported from its
    module on first use (PEP 562), not with the plugin::

        register_connectors, __getattr__ = plugin_hooks(DESCRIPTION, IrcConnector="msgr_bridge_irc.connector")
    """

    @hookimpl
    def register_connectors() -> list[ConnectorDescription]:
        return [description]

    def module_getattr(name: str) -> Any:
        if name in lazy:
            return getattr(importlib.import_module(lazy[name]), name)
        module = description.connector.partition(":")[0].rpartition(".")[0]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return register_connectors, module_getattr


def load_object(ref: str, *, network: str) -> Any:
    """Import ``package.module:name``; a failure is a ``PluginError`` that says which plugin and what."""
    module_name, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"the {network} connector could not load {ref}: {type(exc).__name__}: {exc}",
            hint=f"reinstall the plugin that provides the {network} network, or remove it from [plugins]",
        ) from exc


class LazyConnector:
    """Base of the stand-ins ``lazy_connector`` makes: class attributes now, the real class on first use."""

    description: ClassVar[ConnectorDescription]
    _convert: ClassVar[Callable[[RawPayload, Account], Sequence[Event]] | None] = None
    _loaded: ClassVar[ConnectorClass | None] = None
    _lock: ClassVar[threading.Lock]

    def __new__(cls, ctx: ConnectorContext) -> Connector:  # type: ignore[misc]
        return cls.load()(ctx)

    @classmethod
    def is_loaded(cls) -> bool:
        return cls._loaded is not None

    @classmethod
    def load(cls) -> ConnectorClass:
        with cls._lock:
            if cls._loaded is None:
                desc = cls.description
                real = load_object(desc.connector, network=desc.network)
                problem = validate_connector_class(real)
                if problem is None and real.network != desc.network:
                    problem = f"{desc.connector} is for network {real.network!r}, not {desc.network!r}"
                if problem is not None:
                    raise PluginError(f"the {desc.network} connector is unusable: {problem}")
                cls._loaded = cast(ConnectorClass, real)
            return cls._loaded

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        ref = cls.description.link_flow
        if ref is None:
            return cls.load().link_flow(settings)
        flow: LinkFlow = load_object(ref, network=cls.description.network)(settings)
        return flow

    @classmethod
    def convert_payload(cls, payload: RawPayload, account: Account) -> Sequence[Event]:
        convert = cls._convert
        if convert is None:
            ref = cls.description.convert
            convert = cls.load().convert if ref is None else load_object(ref, network=cls.description.network)
            cls._convert = convert  # found once: this runs for every inbound payload
        events: Sequence[Event] = convert(payload, account)
        return events


def lazy_connector(description: ConnectorDescription) -> ConnectorClass:
    """A stand-in connector class for ``description`` (what the registry holds for a light registration)."""

    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return stand_in.convert_payload(payload, account)

    stand_in: type[LazyConnector] = type(
        f"Lazy{description.network.capitalize()}Connector",
        (LazyConnector,),
        {
            "description": description,
            "network": description.network,
            "display_name": description.display_name,
            "version": description.version,
            "capabilities": description.capabilities,
            "settings_model": description.settings_model,
            "link_callback": description.link_callback,
            "convert": staticmethod(convert),
            "_lock": threading.Lock(),
        },
    )
    return cast(ConnectorClass, stand_in)


REQUIRED_METHODS = (
    "connect",
    "subscribe",
    "disconnect",
    "convert",
    "send_message",
    "sync_state",
    "link_flow",
)


def validate_connector_class(cls: Any) -> str | None:
    """Why ``cls`` is not a usable connector class, or None."""
    if not isinstance(cls, type):
        return f"{cls!r} is not a class"
    network = getattr(cls, "network", None)
    if not isinstance(network, str) or not network or not network.isidentifier():
        return f"{cls.__name__}.network must be a non-empty identifier, got {network!r}"
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        return f"{cls.__name__}.capabilities must be a msgr_bridge.Capabilities instance"
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        return f"{cls.__name__} lacks {', '.join(missing)}"
    return None
