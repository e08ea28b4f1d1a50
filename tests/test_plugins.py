from __future__ import annotations

import importlib.metadata as md

from msgr_bridge_loopback import LoopbackConnector

from msgr_bridge.plugins import PluginManager
from tests.fixtures.bad_connectors import InvalidConnector, RaisingHook


def ep(name: str, value: str) -> md.EntryPoint:
    return md.EntryPoint(name=name, value=value, group="msgr_bridge")


def test_installed_loopback_plugin_is_discovered() -> None:
    registry = PluginManager(allow=["loopback"]).load()
    # a light registration: a stand-in with the class attributes, the real class loaded on first use
    entry = registry.connectors["loopback"]
    assert entry.capabilities == LoopbackConnector.capabilities
    assert entry.load() is LoopbackConnector  # type: ignore[attr-defined]
    report = next(r for r in registry.reports if r.name == "loopback")
    assert report.loaded and report.source == "msgr-bridge-loopback" and report.version


def test_allowlist_skips_plugins_not_named() -> None:
    registry = PluginManager(allow=["something-else"]).load()
    assert "loopback" not in registry.connectors
    report = next(r for r in registry.reports if r.name == "loopback")
    assert not report.loaded and report.skipped_reason == "not in [plugins] allow"


def test_deny_wins_over_wildcard_allow() -> None:
    registry = PluginManager(allow=["*"], deny=["loopback"]).load()
    assert "loopback" not in registry.connectors


def test_plugin_failing_at_import_is_reported_and_others_load() -> None:
    eps = [ep("broken", "tests.fixtures.broken_plugin"), ep("loopback", "msgr_bridge_loopback")]
    registry = PluginManager(allow=["*"]).load(entry_points=eps)
    assert "loopback" in registry.connectors
    [broken] = registry.errors
    assert broken.name == "broken"
    assert "failed to import" in (broken.error or "") and "broken on purpose" in (broken.error or "")


def test_hook_errors_and_invalid_classes_are_isolated() -> None:
    pm = PluginManager(allow=["*"])
    pm.register(RaisingHook(), "raising")
    pm.register(InvalidConnector(), "invalid")
    registry = pm.load(entry_points=[ep("loopback", "msgr_bridge_loopback")])
    assert list(registry.connectors) == ["loopback"]
    errors = {r.name: r.error or "" for r in registry.errors}
    assert "cannot register today" in errors["raising"]
    assert "capabilities must be" in errors["invalid"]


def test_duplicate_network_is_reported() -> None:
    pm = PluginManager(allow=["*"])
    eps = [ep("loopback", "msgr_bridge_loopback"), ep("loopback2", "msgr_bridge_loopback")]
    registry = pm.load(entry_points=eps)
    # the same module registered twice under two names is refused by pluggy itself
    assert list(registry.connectors) == ["loopback"]
    assert any(r.name == "loopback2" and r.error for r in registry.reports)
