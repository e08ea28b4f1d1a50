"""Light registration: the plugin registers IRC without importing bottom or the connector."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import msgr_bridge_irc
(description,) = msgr_bridge_irc.register_connectors()
assert description.network == "irc" and description.settings_model is msgr_bridge_irc.IrcSettings
heavy = [m for m in ("bottom", "msgr_bridge_irc.connector", "msgr_bridge_irc.client") if m in sys.modules]
assert heavy == [], heavy
from msgr_bridge_irc import IrcConnector
assert "bottom" in sys.modules and IrcConnector.settings_model is msgr_bridge_irc.IrcSettings
"""


def test_registering_the_plugin_does_not_import_the_client_library() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
