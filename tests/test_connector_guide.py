"""docs/connector-guide.md covers every piece of the SDK, and its worked example is the loopback connector
as it is: the files its table names exist, and the connector is built from the plugin's description."""

from __future__ import annotations

import re
from pathlib import Path

import msgr_bridge_loopback

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "connector-guide.md").read_text()
LOOPBACK = ROOT / "plugins" / "msgr-bridge-loopback" / "src" / "msgr_bridge_loopback"


def test_every_sdk_module_has_a_place_in_the_guide() -> None:
    modules = sorted(
        p.stem for p in (ROOT / "src" / "msgr_bridge" / "sdk").glob("*.py") if p.stem != "__init__"
    )
    missing = [m for m in modules if f"msgr_bridge.sdk.{m}" not in GUIDE]
    assert not missing, f"docs/connector-guide.md does not mention these SDK modules: {missing}"


def test_the_worked_example_is_the_loopback_connector_as_it_is() -> None:
    table = GUIDE[GUIDE.index("## A network, file by file (loopback)") : GUIDE.index("## Light registration")]
    named = set(re.findall(r"`(\w+\.py)`", table.split("A real network adds")[0]))
    assert {"__init__.py", "config.py", "link.py", "convert.py", "connector.py"} <= named
    assert not [n for n in named if not (LOOPBACK / n).exists()]
    from msgr_bridge_loopback import LoopbackConnector

    assert LoopbackConnector.network == msgr_bridge_loopback.DESCRIPTION.network
    assert LoopbackConnector.capabilities == msgr_bridge_loopback.DESCRIPTION.capabilities
    assert "description=DESCRIPTION" in (LOOPBACK / "connector.py").read_text()
