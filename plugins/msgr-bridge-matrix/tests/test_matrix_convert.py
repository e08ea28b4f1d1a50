"""The pure conversion: known events map as documented; garbage only ever raises MalformedPayload."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgr_bridge_matrix.convert import convert

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Delete,
    MembershipAction,
    MembershipChange,
    Message,
    Reaction,
    ReactionAction,
    ReadReceipt,
    TextFormat,
    Typing,
)

ME, BOB = "@me:hs", "@bob:hs"
ACCOUNT = Account(id="acct", network="matrix", remote_user_id=ME)
ROOM = "!room:hs"


def payload(event: dict[str, Any], **extra: Any) -> dict[str, Any]:
    base = {"event_id": "$e1", "sender": BOB, "origin_server_ts": 1_700_000_000_000}
    return {"room_id": ROOM, "event": {**base, **event}, **extra}


def test_own_message_echo_carries_txn_and_part() -> None:
    p = payload(
        {
            "sender": ME,
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "x"},
            "unsigned": {"transaction_id": "abc~2"},
        }
    )
    (msg,) = convert(p, ACCOUNT)
    assert isinstance(msg, Message)
    assert (msg.txn_id, msg.part, msg.sender.is_self) == ("abc", 2, True)
    assert msg.timestamp.year == 2023


def test_html_only_when_declared() -> None:
    content = {"msgtype": "m.text", "body": "b", "formatted_body": "<b>b</b>"}
    (plain,) = convert(payload({"type": "m.room.message", "content": content}), ACCOUNT)
    (html,) = convert(
        payload({"type": "m.room.message", "content": {**content, "format": "org.matrix.custom.html"}}),
        ACCOUNT,
    )
    assert isinstance(plain, Message) and isinstance(html, Message)
    assert (plain.format, plain.formatted) == (TextFormat.PLAIN, None)
    assert (html.format, html.formatted) == (TextFormat.HTML, "<b>b</b>")


@pytest.mark.parametrize(
    ("before", "after", "sender", "expected"),
    [
        (None, "join", BOB, MembershipAction.JOIN),
        ("join", "leave", BOB, MembershipAction.LEAVE),
        ("join", "leave", ME, MembershipAction.KICK),
        ("join", "ban", ME, MembershipAction.BAN),
        (None, "invite", ME, MembershipAction.INVITE),
        ("ban", "leave", ME, None),
        ("join", "join", BOB, None),  # same name: avatar change
    ],
)
def test_membership_transitions(
    before: str | None, after: str, sender: str, expected: MembershipAction | None
) -> None:
    unsigned = {"prev_content": {"membership": before}} if before else {}
    p = payload(
        {
            "type": "m.room.member",
            "state_key": BOB,
            "sender": sender,
            "content": {"membership": after},
            "unsigned": unsigned,
        }
    )
    events = convert(p, ACCOUNT)
    assert [e.action for e in events if isinstance(e, MembershipChange)] == ([expected] if expected else [])


def test_redaction_of_a_known_reaction_is_a_removal() -> None:
    redaction = {"type": "m.room.redaction", "redacts": "$r", "content": {}}
    (delete,) = convert(payload(redaction), ACCOUNT)
    assert isinstance(delete, Delete) and delete.target_id == "$r"
    (removal,) = convert(
        payload(redaction, redacted_reaction={"target_id": "$m", "key": "👍", "sender": BOB}), ACCOUNT
    )
    assert isinstance(removal, Reaction)
    assert (removal.target_id, removal.emoji, removal.action) == ("$m", "👍", ReactionAction.REMOVE)


def test_typing_diff_and_receipts() -> None:
    typing = {
        "room_id": ROOM,
        "event": {"type": "m.typing", "content": {"user_ids": [BOB]}},
        "typing_before": [ME],
    }
    events = convert(typing, ACCOUNT)
    assert {(e.user.user_id, e.active) for e in events if isinstance(e, Typing)} == {(BOB, True), (ME, False)}
    receipt = {
        "room_id": ROOM,
        "event": {"type": "m.receipt", "content": {"$m": {"m.read": {BOB: {"ts": 1_700_000_000_000}}}}},
    }
    (read,) = convert(receipt, ACCOUNT)
    assert isinstance(read, ReadReceipt) and (read.up_to_id, read.reader.user_id) == ("$m", BOB)


def test_encrypted_redacted_and_unknown_events_convert_to_nothing() -> None:
    assert convert(payload({"type": "m.room.encrypted", "content": {"ciphertext": "x"}}), ACCOUNT) == []
    assert convert(payload({"type": "m.room.message", "content": {}}), ACCOUNT) == []
    assert (
        convert(payload({"type": "m.room.topic", "state_key": "", "content": {"topic": "t"}}), ACCOUNT) == []
    )


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {},
        {"room_id": ROOM},
        {"room_id": 5, "event": {}},
        payload({"type": "m.room.message", "content": {"msgtype": "m.text", "body": 3}}),
        payload({"type": "m.room.message", "origin_server_ts": 10**30, "content": {"body": "x"}}),
        payload(
            {
                "type": "m.reaction",
                "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x"}},
            }
        ),
    ],
)
def test_malformed_payloads_raise_malformed(bad: Any) -> None:
    with pytest.raises(MalformedPayload):
        convert(bad, ACCOUNT)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
event_types = st.sampled_from(
    [
        "m.room.message",
        "m.reaction",
        "m.room.redaction",
        "m.room.member",
        "m.typing",
        "m.receipt",
        "m.room.encrypted",
        "x.custom",
    ]
)
content_keys = st.sampled_from(
    [
        "body",
        "msgtype",
        "format",
        "formatted_body",
        "m.relates_to",
        "m.new_content",
        "url",
        "info",
        "membership",
        "user_ids",
        "redacts",
        "filename",
        "m.mentions",
    ]
)
event_shaped = st.fixed_dictionaries(
    {
        "room_id": st.one_of(st.just(ROOM), json_values),
        "event": st.fixed_dictionaries(
            {"type": event_types, "content": st.dictionaries(content_keys, json_values, max_size=6)},
            optional={
                "event_id": json_values,
                "sender": st.sampled_from([ME, BOB, "", 3]),
                "state_key": json_values,
                "origin_server_ts": json_values,
                "redacts": json_values,
                "unsigned": json_values,
            },
        ),
    },
    optional={"sender_name": json_values, "redacted_reaction": json_values, "typing_before": json_values},
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, event_shaped))
def test_fuzzed_payloads_never_crash(raw: Any) -> None:
    try:
        events = convert(raw, ACCOUNT)
    except MalformedPayload:
        return
    assert all(e.network == "matrix" and e.conversation_id == raw["room_id"] for e in events)
