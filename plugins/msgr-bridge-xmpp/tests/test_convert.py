"""The pure conversion: each payload shape, and fuzzing (only MalformedPayload, never a crash)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgr_bridge_xmpp.convert import convert

from msgr_bridge import (
    Account,
    Delete,
    Edit,
    MalformedPayload,
    MembershipChange,
    Message,
    Reaction,
    ReadReceipt,
    Typing,
)
from msgr_bridge.inbound.normalize import normalize
from msgr_bridge.inbound.sink import RawInbound
from msgr_bridge.schema import MembershipAction, ReactionAction

ME = Account(id="acct-1", network="xmpp", remote_user_id="me@example.org")


def payload(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"v": 1, "type": "chat", "from": "bob@example.org/phone", "to": "me@example.org/x",
                            "id": "m1", "self": False, "timestamp": "2026-01-02T03:04:05Z"}  # fmt: skip
    return {**base, **fields}


def test_direct_message() -> None:
    (event,) = convert(payload(body="hi", oob=[{"url": "https://f.example/a.png", "desc": None}]), ME)
    assert isinstance(event, Message)
    assert (event.conversation_id, event.remote_id, event.text) == ("bob@example.org", "m1", "hi")
    assert event.attachments[0].name == "a.png" and event.timestamp.year == 2026


def test_own_message_sent_elsewhere_is_self_in_the_peer_conversation() -> None:
    (event,) = convert(
        payload(**{"from": "me@example.org/phone", "to": "bob@example.org", "self": True}, body="x"), ME
    )
    assert isinstance(event, Message)
    assert event.conversation_id == "bob@example.org" and event.sender.is_self and event.txn_id == "m1"


def test_group_message_and_room_subject() -> None:
    (event,) = convert(payload(type="groupchat", **{"from": "room@conf.example.org/bob"}, body="yo"), ME)
    assert isinstance(event, Message)
    assert event.conversation_id == "room@conf.example.org" and event.sender.display_name == "bob"
    assert convert(payload(type="groupchat", **{"from": "room@conf.example.org"}, subject="topic"), ME) == ()


def test_our_room_echo_and_our_own_send_share_one_sender_once_normalized() -> None:
    """Issue #10 item 9: in a room our sends were stored under the occupant JID (the echo) and the bare
    JID (the bridge's record). The inbound normalize step puts both under the account's bare JID."""
    echo = payload(type="groupchat", **{"from": "room@conf.example.org/me", "self": True}, body="mine")
    events = normalize(RawInbound(ME, echo), convert)
    assert isinstance(events, list | tuple)
    (event,) = events
    assert isinstance(event, Message)
    assert event.sender.user_id == "me@example.org" and event.sender.is_self
    other = payload(type="groupchat", **{"from": "room@conf.example.org/bob"}, body="theirs")
    (theirs,) = normalize(RawInbound(ME, other), convert)  # type: ignore[misc]
    assert isinstance(theirs, Message) and theirs.sender.user_id == "room@conf.example.org/bob"


def test_private_message_in_a_room_is_its_own_conversation() -> None:
    (event,) = convert(payload(**{"from": "room@conf.example.org/bob"}, body="psst", private=True), ME)
    assert isinstance(event, Message)
    assert event.conversation_id == "room@conf.example.org/bob" and event.sender.display_name == "bob"


def test_edit_delete_reactions_markers_typing() -> None:
    (edit,) = convert(payload(body="new", replace="m0"), ME)
    assert isinstance(edit, Edit) and edit.target_id == "m0" and edit.text == "new"
    (delete,) = convert(payload(retract="m0", body="fallback"), ME)
    assert isinstance(delete, Delete) and delete.target_id == "m0"
    events = convert(payload(reactions={"id": "m0", "values": ["a"], "removed": ["b"]}), ME)
    assert [(e.emoji, e.action) for e in events if isinstance(e, Reaction)] == [
        ("a", ReactionAction.ADD), ("b", ReactionAction.REMOVE)]  # fmt: skip
    (read,) = convert(payload(marker={"kind": "displayed", "id": "m0"}), ME)
    assert isinstance(read, ReadReceipt) and read.up_to_id == "m0"
    assert convert(payload(marker={"kind": "received", "id": "m0"}), ME) == ()
    assert convert(payload(receipt="m0"), ME) == ()
    (typing,) = convert(payload(chat_state="composing"), ME)
    assert isinstance(typing, Typing) and typing.active


ROOM = {"type": "groupchat", "from": "room@conf.example.org"}


def test_moderation_announced_by_the_room_is_a_delete_by_the_moderator() -> None:
    (delete,) = convert(payload(**ROOM, moderated={"id": "m0", "by": "room@conf.example.org/mod"}), ME)
    assert isinstance(delete, Delete) and delete.target_id == "m0"
    assert delete.conversation_id == "room@conf.example.org"
    assert delete.sender is not None and delete.sender.user_id == "room@conf.example.org/mod"
    (anonymous,) = convert(payload(**ROOM, retract="m0", moderated={"id": "m0", "by": None}), ME)
    assert isinstance(anonymous, Delete) and anonymous.target_id == "m0" and anonymous.sender is None


@pytest.mark.parametrize(
    "fields",
    [{**ROOM, "moderated": {"error": "forged"}}, {**ROOM, "moderated": {"id": 5}},
     {**ROOM, "moderated": "m0"},
     {**ROOM, "moderated": {"id": "m0", "by": "elsewhere@conf.example.org/mod"}},
     {**ROOM, "moderated": {"id": "m0", "by": "room@conf.example.org"}},
     {"type": "groupchat", "from": "room@conf.example.org/bob", "moderated": {"id": "m0"}},
     {"type": "chat", "from": "room@conf.example.org", "moderated": {"id": "m0"}}],
)  # fmt: skip
def test_unusable_moderation_is_malformed(fields: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        convert(payload(**fields), ME)


@pytest.mark.parametrize(
    "bad",
    [None, [], "x", {}, payload(v=2), payload(type="weird"), payload(**{"from": "@@"}),
     payload(**{"from": 5}), payload(body=3), payload(timestamp="yesterday"), payload(replace="m0"),
     payload(reactions="x"),
     payload(reactions={"id": "m0", "values": [1]}), payload(marker={"kind": "displayed"}),
     payload(chat_state="dancing"), payload(body="x", id=None), payload(self="yes"), payload(oob=[{"u": 1}])],
)  # fmt: skip
def test_malformed_payloads_raise_malformed(bad: Any) -> None:
    with pytest.raises(MalformedPayload):
        convert(bad, ME)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["v", "type", "from", "to", "id", "stanza_id", "self", "timestamp", "body", "subject", "replace",
          "retract", "reactions", "marker", "receipt", "chat_state", "oob", "reply_to",
          "moderated"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)))
def test_fuzz_arbitrary_values(value: Any) -> None:
    try:
        events = convert(value, ME)
    except MalformedPayload:
        return
    assert all(e.network == "xmpp" for e in events)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), json_values, st.sampled_from(["chat", "groupchat"]))
def test_fuzz_one_field_of_a_good_payload(field: str, value: Any, mtype: str) -> None:
    good = payload(
        type=mtype, body="hi", **({"from": "room@conf.example.org/n"} if mtype == "groupchat" else {})
    )
    try:
        events = convert({**good, field: value}, ME)
    except MalformedPayload:
        return
    assert all(e.account_id == "acct-1" for e in events)


def presence(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1, "kind": "presence", "type": "available", "from": "room@conf.example.org/carol",
        "codes": [], "nick": None, "jid": None, "actor": None, "reason": None, "self": False,
        "timestamp": "2026-01-02T03:04:05Z",
    }  # fmt: skip
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "action"),
    [
        ({}, MembershipAction.JOIN),
        ({"type": "unavailable"}, MembershipAction.LEAVE),
        ({"type": "unavailable", "codes": [303], "nick": "caz"}, MembershipAction.RENAME),
        ({"type": "unavailable", "codes": [307], "actor": "bob", "reason": "spam"}, MembershipAction.KICK),
        ({"type": "unavailable", "codes": [301]}, MembershipAction.BAN),
    ],
)
def test_room_presence_is_membership(fields: dict[str, Any], action: MembershipAction) -> None:
    (event,) = convert(presence(**fields), ME)
    assert isinstance(event, MembershipChange)
    assert event.action == action and event.conversation_id == "room@conf.example.org"
    assert event.user.user_id == "room@conf.example.org/carol" and event.user.display_name == "carol"
    if action == MembershipAction.RENAME:
        assert event.new_name == "caz"
    if action == MembershipAction.KICK:
        assert event.actor is not None and event.actor.user_id == "room@conf.example.org/bob"
        assert event.reason == "spam"


@pytest.mark.parametrize(
    "fields", [{"from": "room@conf.example.org"}, {"type": "subscribe"}, {"codes": "303"}, {"self": 1}]
)
def test_bad_room_presence_is_malformed(fields: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        convert(presence(**fields), ME)
