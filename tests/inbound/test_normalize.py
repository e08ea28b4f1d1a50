"""normalize: conversion failures quarantine one payload; our own account speaks under one identity."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from msgr_bridge.inbound.normalize import Quarantined, normalize
from msgr_bridge.inbound.sink import RawInbound
from msgr_bridge.schema import Account, Event, Message, Reaction, Sender

ACCOUNT = Account(id="acct-x", network="xmpp", remote_user_id="me@example.org")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def room_events(payload: Any, account: Account) -> Sequence[Event]:
    """What the XMPP converter makes of a room message: the sender is the occupant JID."""
    occupant = Sender(user_id="room@muc.example.org/me", display_name="me", is_self=payload["self"])
    base = {"network": "xmpp", "account_id": account.id, "conversation_id": "room@muc.example.org"}
    return [
        Message(**base, timestamp=T0, remote_id=payload["id"], sender=occupant, text="hi"),
        Reaction(**base, timestamp=T0, target_id="m0", sender=occupant, emoji="👍"),
    ]


def test_our_own_events_are_stored_under_the_accounts_identity() -> None:
    """Issue #10 item 9: an XMPP room stored our sends under the occupant JID and the bare JID."""
    events = normalize(RawInbound(ACCOUNT, {"id": "m1", "self": True}), room_events)
    assert not isinstance(events, Quarantined)
    assert [e.sender for e in events if isinstance(e, Message | Reaction)] == [
        Sender(user_id="me@example.org", display_name="me", is_self=True)
    ] * 2


def test_others_keep_the_identity_the_network_gave_them() -> None:
    events = normalize(RawInbound(ACCOUNT, {"id": "m1", "self": False}), room_events)
    assert not isinstance(events, Quarantined)
    assert {e.sender.user_id for e in events if isinstance(e, Message | Reaction)} == {
        "room@muc.example.org/me"
    }
