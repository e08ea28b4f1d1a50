"""``convert``: signal-cli's envelopes into canonical events, without a network."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_signal.convert import convert, group_conversation, message_id, parse_message_id
from signal_fixtures import BOB, ME, sample_payloads

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Delete,
    Edit,
    Message,
    MessageReceipt,
    Reaction,
    ReactionAction,
    ReadReceipt,
    ReceiptState,
    Typing,
)

ACCOUNT = Account(id="acct-1", network="signal", remote_user_id=ME)
T = 1700000000000
BOB_ENV = {"source": BOB, "sourceNumber": BOB, "sourceUuid": "0b0b0b0b-0000-4000-8000-000000000002",
           "sourceName": "Bob", "sourceDevice": 1}  # fmt: skip


def env(ts: int = T, who: dict[str, Any] | None = None, **payload: Any) -> dict[str, Any]:
    return {"v": 1, "account": ME, "envelope": {**(who or BOB_ENV), "timestamp": ts, **payload}}


def one(payload: dict[str, Any]) -> Any:
    (event,) = convert(payload, ACCOUNT)
    return event


def test_direct_message() -> None:
    m = one(env(dataMessage={"timestamp": T, "message": "hello"}))
    assert isinstance(m, Message)
    assert (m.conversation_id, m.remote_id, m.text) == (BOB, f"{T}:{BOB}", "hello")
    assert m.sender.user_id == BOB and m.sender.display_name == "Bob" and not m.sender.is_self
    assert m.timestamp.timestamp() == T / 1000 and m.txn_id is None


def test_group_message_is_in_the_group_conversation() -> None:
    group = {"groupId": "internal-1", "groupName": "Friends", "revision": 1, "type": "DELIVER"}
    m = one(env(dataMessage={"timestamp": T, "message": "hi all", "groupInfo": group}))
    assert m.conversation_id == group_conversation("internal-1") == "group.aW50ZXJuYWwtMQ=="


def test_person_without_number_is_their_uuid() -> None:
    who = {"sourceUuid": "0c0c0c0c-0000-4000-8000-000000000003", "sourceDevice": 1}
    m = one(env(who=who, dataMessage={"timestamp": T, "message": "private number"}))
    assert m.conversation_id == m.sender.user_id == "0c0c0c0c-0000-4000-8000-000000000003"


def test_quote_is_a_reply_and_mentions_are_kept() -> None:
    quote = {"id": T - 5, "author": ME, "authorNumber": ME, "authorUuid": "x", "text": "earlier"}
    mention = {"number": ME, "uuid": "x", "name": "Me", "start": 0, "length": 1}
    m = one(env(dataMessage={"timestamp": T, "message": "\ufffc yes", "quote": quote, "mentions": [mention]}))
    assert m.reply_to == f"{T - 5}:{ME}"
    assert m.mentions[0].user_id == ME and (m.mentions[0].offset, m.mentions[0].length) == (0, 1)


def test_attachments_use_the_stored_copy_when_there_is_one() -> None:
    items = [{"id": "a1.png", "contentType": "image/png", "filename": "cat.png", "size": 12},
             {"id": "a2", "contentType": "application/pdf", "size": 5}]  # fmt: skip
    payload = env(dataMessage={"timestamp": T, "attachments": items})
    payload["media"] = {"a1.png": {"url": "https://bridge/s/tok/content", "size": 12}}
    m = one(payload)
    first, second = m.attachments
    assert (first.name, first.mime_type, first.size, first.url, first.remote_id) == (
        "cat.png", "image/png", 12, "https://bridge/s/tok/content", "a1.png")  # fmt: skip
    assert (second.name, second.url, second.remote_id) == ("a2", None, "a2")
    assert m.text == ""


def test_edit_targets_the_original_message() -> None:
    e = one(
        env(
            T + 9,
            editMessage={"targetSentTimestamp": T, "dataMessage": {"timestamp": T + 9, "message": "v2"}},
        )
    )
    assert isinstance(e, Edit)
    assert (e.target_id, e.remote_id, e.text, e.conversation_id) == (
        f"{T}:{BOB}",
        f"{T + 9}:{BOB}",
        "v2",
        BOB,
    )


def test_remote_delete_of_their_own_message() -> None:
    d = one(env(T + 9, dataMessage={"timestamp": T + 9, "remoteDelete": {"timestamp": T}}))
    assert isinstance(d, Delete) and d.target_id == f"{T}:{BOB}" and d.sender is not None


@pytest.mark.parametrize("remove", [False, True])
def test_reaction_added_and_removed(remove: bool) -> None:
    reaction = {"emoji": "❤️", "isRemove": remove, "targetAuthor": ME, "targetAuthorNumber": ME,
                "targetAuthorUuid": "x", "targetSentTimestamp": T - 1}  # fmt: skip
    r = one(env(dataMessage={"timestamp": T, "reaction": reaction}))
    assert isinstance(r, Reaction) and r.target_id == f"{T - 1}:{ME}" and r.emoji == "❤️"
    assert r.action == (ReactionAction.REMOVE if remove else ReactionAction.ADD)


def test_read_receipt_is_a_receipt_of_each_message_and_moves_the_read_marker() -> None:
    receipt = {
        "when": T,
        "isDelivery": False,
        "isRead": True,
        "isViewed": False,
        "timestamps": [T - 9, T - 3],
    }
    events = convert(env(receiptMessage=receipt), ACCOUNT)
    receipts = [e for e in events if isinstance(e, MessageReceipt)]
    assert [(r.target_id, r.state, r.recipient.user_id, r.conversation_id) for r in receipts] == [
        (f"{T - 9}:{ME}", ReceiptState.READ, BOB, BOB),
        (f"{T - 3}:{ME}", ReceiptState.READ, BOB, BOB),
    ]
    [marker] = [e for e in events if isinstance(e, ReadReceipt)]
    assert marker.up_to_id == f"{T - 3}:{ME}" and marker.reader.user_id == BOB


def test_delivery_receipt_is_a_delivered_receipt() -> None:
    receipt = {"when": T, "isDelivery": True, "isRead": False, "isViewed": False, "timestamps": [T - 9]}
    r = one(env(receiptMessage=receipt))
    assert isinstance(r, MessageReceipt) and r.state is ReceiptState.DELIVERED
    assert r.target_id == f"{T - 9}:{ME}" and r.recipient.user_id == BOB


def test_receipt_of_a_group_message_is_placed_in_its_group() -> None:
    receipt = {"when": T, "isDelivery": False, "isRead": False, "isViewed": True, "timestamps": [T - 9]}
    payload = {**env(receiptMessage=receipt), "receipt_groups": {str(T - 9): "group.abc="}}
    [r] = convert(payload, ACCOUNT)  # no read marker: the group's is not moved by a 1:1 receipt
    assert (
        isinstance(r, MessageReceipt) and r.conversation_id == "group.abc=" and r.state is ReceiptState.READ
    )


def test_typing_in_a_group() -> None:
    t = one(env(typingMessage={"action": "STARTED", "timestamp": T, "groupId": "internal-1"}))
    assert isinstance(t, Typing) and t.active and t.conversation_id == group_conversation("internal-1")
    stopped = one(env(typingMessage={"action": "STOPPED", "timestamp": T}))
    assert not stopped.active and stopped.conversation_id == BOB


def test_sync_message_is_the_person_own_message() -> None:
    me = {**BOB_ENV, "source": ME, "sourceNumber": ME, "sourceName": "Me"}
    sent = {"timestamp": T, "message": "from my phone", "destination": BOB, "destinationNumber": BOB}
    m = one(env(who=me, syncMessage={"sentMessage": sent}))
    assert m.sender.is_self and m.sender.user_id == ME and m.conversation_id == BOB
    assert m.remote_id == f"{T}:{ME}" and m.txn_id is None
    echo = one({**env(who=me, syncMessage={"sentMessage": sent}), "txn_id": "txn-7"})
    assert echo.txn_id == "txn-7" and echo.remote_id == m.remote_id


def test_sync_read_markers_and_empty_messages_convert_to_nothing() -> None:
    me = {**BOB_ENV, "source": ME, "sourceNumber": ME}
    assert (
        convert(env(who=me, syncMessage={"readMessages": [{"sender": BOB, "timestamp": T}]}), ACCOUNT) == []
    )
    assert convert(env(dataMessage={"timestamp": T, "expiresInSeconds": 3600}), ACCOUNT) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"v": 1},
        {"envelope": "nope"},
        env(
            dataMessage={
                "timestamp": T,
                "reaction": {"emoji": "x", "isRemove": False, "targetSentTimestamp": T},
            }
        ),
        env(dataMessage={"timestamp": "soon", "message": "x"}),
        {"v": 1, "envelope": {"timestamp": T, "dataMessage": {"timestamp": T, "message": "no sender"}}},
        env(editMessage={"targetSentTimestamp": T}),
    ],
)
def test_malformed_payloads_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        convert(payload, ACCOUNT)


def test_message_ids_round_trip() -> None:
    assert parse_message_id(message_id(T, BOB)) == (T, BOB)
    with pytest.raises(ValueError):
        parse_message_id("not-an-id")


def test_samples_convert() -> None:
    kinds = [type(e).__name__ for p in sample_payloads() for e in convert(p, ACCOUNT)]
    assert kinds.count("Message") >= 4 and {"Edit", "Delete", "Reaction", "ReadReceipt", "Typing"} <= set(
        kinds
    )
