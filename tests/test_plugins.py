from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from msgr_bridge_loopback import LoopbackConnector

from msgr_bridge import __version__
from msgr_bridge.plugins import PluginManager, core_range_problem
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


def _installed_plugin(tmp_path: Path, name: str, requires: list[str]) -> md.EntryPoint:
    """A real installed distribution (a ``.dist-info`` folder) whose entry point is the loopback plugin."""
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "entry_points.txt").write_text("[msgr_bridge]\nloopback = msgr_bridge_loopback\n")
    [entry] = md.PathDistribution(info).entry_points
    return entry


def test_a_plugin_built_for_another_core_is_refused_before_import(tmp_path: Path) -> None:
    entry = _installed_plugin(tmp_path, "msgr-bridge-old", ["msgr-bridge>=0.0.1,<0.1", "bottom>=3"])
    registry = PluginManager(allow=["*"]).load(entry_points=[entry])
    assert "loopback" not in registry.connectors
    [report] = registry.errors
    assert report.source == "msgr-bridge-old"
    assert f"built for msgr-bridge <0.1,>=0.0.1, but this core is {__version__}" in (report.error or "")


def test_a_plugin_whose_range_admits_this_core_loads(tmp_path: Path) -> None:
    entry = _installed_plugin(tmp_path, "msgr-bridge-ok", [f"msgr-bridge>={__version__},<99"])
    assert "loopback" in PluginManager(allow=["*"]).load(entry_points=[entry]).connectors


def test_core_range_rules() -> None:
    assert core_range_problem(["msgr-bridge>=0.1,<0.2"], "0.1.5") is None
    assert core_range_problem(["msgr_bridge>=0.2"], "0.1.0") is not None  # names are normalised
    assert core_range_problem(["msgr-bridge"], "0.1.0") is None  # no range: loads (with a warning)
    assert core_range_problem(["msgr-bridge<0.1; extra == 'x'"], "0.1.0") is None  # only for an extra
    assert core_range_problem(["other>=9", "not a requirement !!"], "0.1.0") is None


def test_every_shipped_plugin_declares_the_cores_it_works_with() -> None:
    import tomllib

    for pyproject in sorted((Path(__file__).parents[1] / "plugins").glob("*/pyproject.toml")):
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        core = [d for d in deps if d.replace("_", "-").startswith("msgr-bridge")]
        assert core and core_range_problem(core) is None and any("<" in d for d in core), pyproject


# the client library of each shipped connector: none may load until an account of that network starts
CLIENT_LIBRARIES = ("telethon", "slack_sdk", "msal", "neonize", "mautrix", "slixmpp", "bottom", "mistune")
CONNECTOR_MODULES = tuple(
    f"msgr_bridge_{n}.connector"
    for n in ("irc", "discord", "signal", "matrix", "slack", "teams", "telegram", "whatsapp", "xmpp")
)
"""Issue 19 (idle memory): a plugin's own connector module (its client, gateway, conversion) loads with the
first account too, not with the registration (Discord's and Signal's did: ~1 MB, and mistune)."""


def test_shipped_plugins_register_without_importing_their_client_libraries() -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from msgr_bridge.plugins import PluginManager\n"
        "registry = PluginManager(allow=['*']).load()\n"
        f"heavy = sorted(m for m in {CLIENT_LIBRARIES + CONNECTOR_MODULES!r} if m in sys.modules)\n"
        "print(len(registry.connectors), heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, heavy = proc.stdout.strip().splitlines()[-1].split(" ", 1)  # after the plugins' log lines
    assert int(count) >= 10 and heavy == "[]", proc.stdout


def test_a_light_registration_declares_what_its_connector_class_declares() -> None:
    registry = PluginManager(allow=["*"]).load()
    for network, entry in registry.connectors.items():
        real = entry.load() if hasattr(entry, "load") else entry
        assert entry.capabilities == real.capabilities, network
        assert entry.display_name == real.display_name, network
        assert getattr(entry, "settings_model", None) is getattr(real, "settings_model", None), network
        assert getattr(entry, "link_callback", False) == getattr(real, "link_callback", False), network
