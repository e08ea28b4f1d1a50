"""Light registration: the XMPP plugin registers without importing slixmpp, which loads when the first
account starts (checked in a fresh interpreter, through ``sys.modules``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, sys
    from msgr_bridge.plugins import PluginManager
    from msgr_bridge.testing.fakes import make_context

    seen = {}
    cls = PluginManager().load().connectors["xmpp"]
    seen["registered"] = "slixmpp" in sys.modules
    seen["model"] = cls.settings_model.__name__
    seen["reactions"] = cls.capabilities.reactions
    connector = cls(make_context("xmpp", remote_user_id="me@example.org", settings={"rooms": ["A@b.org"]}))
    seen["started"] = "slixmpp" in sys.modules
    seen["rooms"] = connector.settings.rooms
    print(json.dumps(seen))
    """
)


def test_registering_the_plugin_does_not_import_slixmpp() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {
        "registered": False,
        "model": "XmppSettings",
        "reactions": True,
        "started": True,
        "rooms": ["a@b.org"],
    }
