"""Fixtures: ``fake``, the recording stand-in for whatsmeow's Go library (``msgr_bridge_whatsapp.testing``)
put in place of neonize's Go function table for the test; ``wa`` builds linked connectors on it."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from msgr_bridge_whatsapp import WhatsAppConnector, client
from msgr_bridge_whatsapp.session import encode
from msgr_bridge_whatsapp.testing import FakeWhatsmeow

from msgr_bridge.testing.fakes import CollectingSink, make_context

sys.path.insert(0, str(Path(__file__).parent))

ME = "447700900001@s.whatsapp.net"
BOB = "447700900002@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
FAST = {"send_interval_s": 0, "send_jitter_s": 0, "relogin_base_s": 0, "connect_timeout_s": 10}


def session_blob(jid: str = ME) -> str:
    """A session database as whatsmeow leaves it after pairing (the fake reads the device row)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY)")
    db.execute("INSERT INTO whatsmeow_device VALUES (?)", (jid,))
    db.commit()
    data = db.serialize()
    db.close()
    return encode(data)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWhatsmeow]:
    go = FakeWhatsmeow()
    monkeypatch.setattr(client, "GO_LIBRARY", go)
    yield go


def build(
    settings: dict[str, Any] | None = None,
    *,
    sink: Any = None,
    media: Any = None,
    state: Any = None,
    clock: Any = None,
    secrets: dict[str, str] | None = None,
) -> WhatsAppConnector:
    ctx = make_context(
        "whatsapp",
        remote_user_id=ME,
        settings={"jid": ME, **FAST, **(settings or {})},
        secrets=secrets if secrets is not None else {"session": session_blob()},
        sink=sink if sink is not None else CollectingSink(),
        media=media,
        state=state,
    )
    return WhatsAppConnector(replace(ctx, clock=clock) if clock is not None else ctx)
