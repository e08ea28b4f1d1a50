"""Pure conversion: Graph chatMessages to canonical events, and canonical text to Teams HTML."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_teams.convert import convert, html_to_text, text_to_html
from msgr_bridge_teams.outbound import message_body

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Attachment,
    Delete,
    Edit,
    Mention,
    Message,
    OutboundMessage,
    Reaction,
    ReactionAction,
    TextFormat,
)

ME, BOB, CHAT = "me-id", "bob-id", "19:abc@thread.v2"
ACCOUNT = Account(id="acct-1", network="teams", remote_user_id=ME)


def msg(content: str = "<p>hi</p>", **extra: Any) -> dict[str, Any]:
    return {
        "id": "1700000000001",
        "messageType": "message",
        "createdDateTime": "2026-12-07T10:00:00.000Z",
        "lastModifiedDateTime": "2026-12-07T10:00:00.000Z",
        "lastEditedDateTime": None,
        "deletedDateTime": None,
        "from": {"user": {"id": BOB, "displayName": "Bob", "userIdentityType": "aadUser"}},
        "body": {"contentType": "html", "content": content},
        "attachments": [],
        "mentions": [],
        "reactions": [],
        **extra,
    }


def payload(change: str = "message", conversation: str = CHAT, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "self_id": ME, "conversation": conversation, "change": change, "message": msg(), **extra}


def test_html_message_with_mention_and_formatting() -> None:
    body = '<p>Hi <at id="0">Alice Smith</at>, <b>look</b>&nbsp;&amp; see</p><p>line 2</p>'
    mention = {
        "id": 0,
        "mentionText": "Alice Smith",
        "mentioned": {"user": {"id": ME, "displayName": "Alice"}},
    }
    (event,) = convert({**payload(), "message": msg(body, mentions=[mention])}, ACCOUNT)
    assert isinstance(event, Message)
    assert event.text == "Hi Alice Smith, look\xa0& see\nline 2"
    assert event.format == TextFormat.HTML and event.formatted == body
    (m,) = event.mentions
    assert m.user_id == ME and event.text[m.offset : m.offset + m.length] == "Alice Smith"  # type: ignore[operator]
    assert event.sender.user_id == BOB and not event.sender.is_self and event.remote_id == "1700000000001"


def test_quote_reply_in_a_chat_and_file_reference() -> None:
    attachments = [
        {"id": "1699999999999", "contentType": "messageReference", "content": "{}"},
        {
            "id": "f1",
            "contentType": "reference",
            "name": "plan.docx",
            "contentUrl": "https://x.sharepoint.com/p",
        },
    ]
    body = '<attachment id="1699999999999"></attachment><p>agreed</p>'
    (event,) = convert({**payload(), "message": msg(body, attachments=attachments)}, ACCOUNT)
    assert isinstance(event, Message)
    assert event.reply_to == "1699999999999" and event.text == "agreed"
    assert event.attachments == (
        Attachment(name="plan.docx", url="https://x.sharepoint.com/p", remote_id="f1"),
    )


def test_channel_reply_is_in_its_roots_thread() -> None:
    conv = "team-1/19:c@thread.tacv2"
    (event,) = convert({**payload(conversation=conv), "message": msg(replyToId="1690000000000")}, ACCOUNT)
    assert isinstance(event, Message)
    assert event.thread_id == "1690000000000" and event.remote_id == "1690000000000/1700000000001"


def test_edit_delete_and_reactions() -> None:
    edited = msg("<p>new</p>", lastEditedDateTime="2026-12-07T10:05:00.000Z")
    (edit,) = convert({**payload("edit"), "message": edited}, ACCOUNT)
    assert isinstance(edit, Edit) and edit.text == "new" and edit.target_id == "1700000000001"
    gone = msg(deletedDateTime="2026-12-07T10:06:00.000Z")
    (delete,) = convert({**payload("delete"), "message": gone}, ACCOUNT)
    assert isinstance(delete, Delete) and delete.target_id == "1700000000001"
    assert convert({**payload(), "message": gone}, ACCOUNT) == []  # a deleted message is not a new one
    added, removed = convert(
        payload("reactions", reactions_added=[[ME, "like"]], reactions_removed=[[BOB, "💘"]]), ACCOUNT
    )
    assert isinstance(added, Reaction) and added.emoji == "👍" and added.sender.is_self
    assert isinstance(removed, Reaction) and removed.action == ReactionAction.REMOVE and removed.emoji == "💘"


def test_echo_and_system_messages() -> None:
    mine = msg(**{"from": {"user": {"id": ME, "displayName": "Me"}}})
    (event,) = convert({**payload(txn_id="txn-9"), "message": mine}, ACCOUNT)
    assert isinstance(event, Message) and event.sender.is_self and event.txn_id == "txn-9"
    assert convert({**payload(), "message": msg(messageType="systemEventMessage")}, ACCOUNT) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"v": 2},
        {**payload(), "message": "x"},
        {**payload(), "change": "poke"},
        {**payload(), "message": msg(createdDateTime="yesterday")},
        payload("reactions", reactions_added=[["only-one"]]),
        {**payload(), "message": {**msg(), "body": {"content": 5}}},
    ],
)
def test_malformed_payloads_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        convert(bad, ACCOUNT)


def test_text_to_html_escapes_and_wraps_mentions() -> None:
    assert text_to_html("a <b> & c\nd") == "<p>a &lt;b&gt; &amp; c<br>d</p>"
    assert text_to_html("hi Bob!", [(0, 3, 3)]) == '<p>hi <at id="0">Bob</at>!</p>'
    assert html_to_text(text_to_html("x < y\nz"))[0] == "x < y\nz"


def test_outbound_body() -> None:
    plain = OutboundMessage(
        txn_id="t", text="hi Bob", mentions=(Mention(user_id=BOB, display="Bob", offset=3, length=3),)
    )
    body = message_body(plain)
    assert body["body"] == {"contentType": "html", "content": '<p>hi <at id="0">Bob</at></p>'}
    assert body["mentions"][0]["mentioned"]["user"]["id"] == BOB
    html = OutboundMessage(txn_id="t", text="x", formatted="<p><b>x</b></p>", format=TextFormat.HTML)
    assert message_body(html)["body"]["content"] == "<p><b>x</b></p>"
    # attachments are uploaded by the connector (files.py); the body is the text alone
    with_file = OutboundMessage(txn_id="t", text="f", attachments=(Attachment(name="a"),))
    assert message_body(with_file)["body"]["content"] == "<p>f</p>" and "attachments" not in message_body(
        with_file
    )
