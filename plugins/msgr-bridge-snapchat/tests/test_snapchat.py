"""Snapchat is listed, never linked: every capability false, every call a NotSupported giving the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from msgr_bridge_snapchat import SnapchatConnector
from msgr_bridge_snapchat.connector import REASON

from msgr_bridge import NotSupported
from msgr_bridge.connectors.base import describe
from msgr_bridge.schema import Account, OutboundMessage
from msgr_bridge.testing.fakes import make_context

BIN = Path(sys.executable).parent / "msgr-bridge"


def test_description_says_unsupported_with_the_reason() -> None:
    described = describe(SnapchatConnector)
    assert described["supported"] is False
    assert "no third-party messaging API" in described["unsupported_reason"]
    flags = {k: v for k, v in described["capabilities"].items() if isinstance(v, bool)}
    assert flags and not any(flags.values()), flags


async def test_every_call_raises_not_supported_naming_the_reason() -> None:
    with pytest.raises(NotSupported) as linking:
        SnapchatConnector.link_flow({})
    assert linking.value.hint == REASON
    account = Account(id="a", tenant="t", network="snapchat", remote_user_id="me")
    with pytest.raises(NotSupported):
        SnapchatConnector.convert({}, account)
    connector = SnapchatConnector(make_context("snapchat"))
    for call in (
        connector.connect(),
        connector.subscribe(),
        connector.send_message("c", OutboundMessage(text="hi", txn_id="t1")),
        connector.edit("c", "m", OutboundMessage(text="hi", txn_id="t1")),
        connector.sync_state(None),
    ):
        with pytest.raises(NotSupported) as refused:
            await call
        assert refused.value.network == "snapchat"


def test_plugins_command_lists_snapchat_as_unsupported(tmp_path: Path) -> None:
    listing = subprocess.run(
        [str(BIN), "plugins", "--json"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    [snapchat] = [c for c in json.loads(listing.stdout)["connectors"] if c["network"] == "snapchat"]
    assert snapchat["supported"] is False and snapchat["unsupported_reason"] == REASON
    text = subprocess.run([str(BIN), "plugins"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "unsupported: Snap offers no third-party messaging API" in text.stdout
