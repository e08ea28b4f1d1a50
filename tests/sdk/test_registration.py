"""Light registration: the registry knows a described network at once and imports its connector module
only when an account of it starts (checked in a fresh interpreter, through ``sys.modules``)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from msgr_bridge import Capabilities, hookimpl
from msgr_bridge.connectors.base import BaseConnector
from msgr_bridge.errors import PluginError
from msgr_bridge.plugins import PluginManager
from msgr_bridge.sdk.registration import (
    ConnectorDescription,
    lazy_connector,
    plugin_hooks,
    validate_connector_class,
)
from msgr_bridge.testing.fakes import make_context

PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from msgr_bridge.plugins import PluginManager
    from msgr_bridge.testing.fakes import make_context

    HEAVY = ("msgr_bridge_loopback.connector", "msgr_bridge_loopback.remote")
    seen = {}
    registry = PluginManager().load()
    cls = registry.connectors["loopback"]
    seen["registered"] = [m for m in HEAVY if m in sys.modules]
    seen["capabilities"] = cls.capabilities.edits
    seen["model"] = cls.settings_model.__name__
    asyncio.run(cls.link_flow({"network": "probe"}).start())
    seen["link_flow_started"] = [m for m in HEAVY if m in sys.modules]
    connector = cls(make_context("loopback", settings={"network": "probe"}))
    seen["account_started"] = [m for m in HEAVY if m in sys.modules]
    seen["instance"] = type(connector).__module__ + "." + type(connector).__name__
    print(json.dumps(seen))
    """
)


def test_the_loopback_connector_module_loads_only_when_an_account_starts() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["registered"] == [] and seen["capabilities"] is True and seen["model"] == "LoopbackSettings"
    assert seen["link_flow_started"] == []  # the link flow is light too (no remote url given)
    assert seen["account_started"] == ["msgr_bridge_loopback.connector", "msgr_bridge_loopback.remote"]
    assert seen["instance"] == "msgr_bridge_loopback.connector.LoopbackConnector"


def describe(**kw: object) -> ConnectorDescription:
    fields: dict[str, object] = {
        "network": "loopback",
        "display_name": "Loopback",
        "capabilities": Capabilities(),
        "connector": "msgr_bridge_loopback.connector:LoopbackConnector",
    }
    fields.update(kw)
    return ConnectorDescription(**fields)  # type: ignore[arg-type]


def test_a_stand_in_converts_and_builds_the_real_connector_without_refs_for_link_and_convert() -> None:
    cls = lazy_connector(describe())
    connector = cls(make_context("loopback", settings={"network": "x"}))
    assert type(connector).__name__ == "LoopbackConnector"
    payload = {"type": "typing", "conversation": "g", "sender": "bob", "active": True, "seq": 1, "ts": 1.0}
    assert cls.convert(payload, connector.ctx.account)  # through the loaded class's convert


def test_bad_descriptions_are_plugin_errors_and_a_wrong_class_fails_at_start() -> None:
    class Plugin:
        @hookimpl
        def register_connectors(self) -> list[object]:
            return [describe(network="not a name"), describe(network="fine", connector="nocolon")]

    pm = PluginManager()
    pm.register(Plugin(), "bad-descriptions")
    registry = pm.load(builtins=(), entry_points=())
    assert registry.connectors == {}
    error = registry.reports[0].error or ""
    assert "register_connectors" in error and "nocolon" in error
    wrong = lazy_connector(describe(network="other"))
    with pytest.raises(PluginError, match="is for network 'loopback', not 'other'"):
        wrong(make_context("other"))
    missing = lazy_connector(describe(connector="msgr_bridge_nothing.connector:X"))
    with pytest.raises(PluginError, match=r"could not load msgr_bridge_nothing\.connector:X"):
        missing(make_context("loopback"))


# --- writing the description once: the plugin's hook and the connector class take it ---------------------


class _Settings(BaseModel):
    host: str = "x"


def _flow(settings: Any) -> tuple[str, Any]:
    return ("flow", settings)


def _convert(payload: Any, account: Any) -> list[Any]:
    return [("converted", payload)]


DESCRIBED = ConnectorDescription(
    network="described",
    display_name="Described",
    version="1.2",
    capabilities=Capabilities(edits=True),
    settings_model=_Settings,
    connector=f"{__name__}:DescribedConnector",
    link_flow=f"{__name__}:_flow",
    convert=f"{__name__}:_convert",
)


class DescribedConnector(BaseConnector, description=DESCRIBED):
    pass


def test_a_connector_class_takes_its_attributes_and_references_from_the_description() -> None:
    c = DescribedConnector
    assert (c.network, c.display_name, c.version) == ("described", "Described", "1.2")
    assert c.capabilities is DESCRIBED.capabilities and c.settings_model is _Settings
    assert c.link_flow({"a": 1}) == ("flow", {"a": 1})  # type: ignore[comparison-overlap]
    assert c.convert({"p": 1}, None) == [("converted", {"p": 1})]  # type: ignore[arg-type]
    assert validate_connector_class(c) is None

    class Own(BaseConnector, description=DESCRIBED):
        @staticmethod
        def convert(payload: Any, account: Any) -> list[Any]:
            return ["own"]

    assert Own.convert({}, None) == ["own"]  # type: ignore[arg-type]


def test_a_connector_class_takes_link_callback_from_the_description() -> None:
    """A flow that needs the OAuth redirect URI (Teams) says so once, in the description: the class written
    against it gets ``link_callback`` as the lazy stand-in does (``linking`` reads it off the class)."""
    oauth = dataclasses.replace(DESCRIBED, network="oauth", link_callback=True)

    class OAuth(BaseConnector, description=oauth):
        pass

    assert getattr(OAuth, "link_callback", False) is True
    assert lazy_connector(oauth).link_callback is True  # type: ignore[attr-defined]
    assert getattr(DescribedConnector, "link_callback", False) is False


def test_plugin_hooks_register_the_description_and_import_names_on_first_use() -> None:
    register, module_getattr = plugin_hooks(DESCRIBED, DescribedConnector=__name__)
    pm = PluginManager()
    pm.pm.register(SimpleNamespace(register_connectors=register), name="described-plugin")
    assert pm.pm.hook.register_connectors() == [[DESCRIBED]]
    assert module_getattr("DescribedConnector") is DescribedConnector
    with pytest.raises(AttributeError, match="Nothing"):
        module_getattr("Nothing")
