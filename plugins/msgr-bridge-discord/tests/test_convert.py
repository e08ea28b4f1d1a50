"""``convert`` on its own: Discord dispatches (as the connector wraps them) to canonical events."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_discord.convert import convert, nonce_for, txn_from_nonce
from msgr_bridge_discord.markdown import render_html

from msgr_bridge import Account, MalformedPayload
from msgr_bridge.schema import (
    Delete,
    Edit,
    MembershipAction,
    MembershipChange,
    Message,
    Reaction,
    ReactionAction,
    TextFormat,
    Typing,
)

ACCOUNT = Account(id="acct-1", network="discord", remote_user_id="10")
BOB = {"id": "20", "username": "bob", "global_name": "Bob", "discriminator": "0"}
BASE = {"v": 1, "self_id": "10", "received_at": "2026-01-02T03:04:05+00:00"}


def message(**over: Any) -> dict[str, Any]:
    d = {
        "id": "500",
        "channel_id": "30",
        "guild_id": "40",
        "author": BOB,
        "content": "hello",
        "type": 0,
        "timestamp": "2026-01-02T03:04:05.500000+00:00",
        "mentions": [],
        "attachments": [],
    }
    return {**BASE, "t": "MESSAGE_CREATE", "d": {**d, **over}}


def one(payload: dict[str, Any]) -> Any:
    [event] = convert(payload, ACCOUNT)
    return event


def test_plain_message() -> None:
    m = one(message())
    assert isinstance(m, Message)
    assert (m.conversation_id, m.remote_id, m.text, m.format, m.formatted) == (
        "30",
        "500",
        "hello",
        "plain",
        None,
    )
    assert m.sender.user_id == "20" and m.sender.display_name == "Bob" and not m.sender.is_self
    assert m.timestamp.isoformat() == "2026-01-02T03:04:05.500000+00:00" and m.txn_id is None


def test_markdown_mentions_and_member_nick() -> None:
    payload = message(
        content="**bold** __under__ ||spoiler|| ~~gone~~ <@10> in <#30> <:blob:99> <script>",
        mentions=[{"id": "10", "username": "bridge-bot"}],
        member={"nick": "Bobby"},
    )
    m = one(payload)
    assert m.text == "**bold** __under__ ||spoiler|| ~~gone~~ @bridge-bot in #30 :blob: <script>"
    assert m.format is TextFormat.HTML
    assert m.formatted == (
        "<strong>bold</strong> <u>under</u> <span data-mx-spoiler>spoiler</span> <del>gone</del>"
        " @bridge-bot in #30 :blob: &lt;script&gt;"
    )
    assert m.sender.display_name == "Bobby" and [x.user_id for x in m.mentions] == ["10"]


def test_html_is_escaped_and_plain_text_has_no_formatting() -> None:
    assert render_html("a <b>tag</b> & more") is None
    assert render_html("`x < y`") == "<code>x &lt; y</code>"


def test_reply_thread_and_attachments() -> None:
    att = {
        "id": "7",
        "filename": "cat.png",
        "size": 12,
        "url": "https://cdn/x.png",
        "content_type": "image/png",
    }
    m = one({**message(type=19, message_reference={"message_id": "499"}, attachments=[att]), "thread": True})
    assert m.reply_to == "499" and m.thread_id == "30"
    [a] = m.attachments
    assert (a.name, a.mime_type, a.size, a.url, a.remote_id) == (
        "cat.png",
        "image/png",
        12,
        "https://cdn/x.png",
        "7",
    )


def test_own_sends_are_ours_and_carry_the_txn() -> None:
    hook = message(webhook_id="77", author={"id": "77", "username": "Alice", "bot": True})
    m = one({**hook, "own_webhook": True, "txn_id": "txn-1"})
    assert m.sender.is_self and m.txn_id == "txn-1" and m.sender.display_name == "Alice"
    someone_elses_hook = one({**hook, "own_webhook": False, "txn_id": "txn-1"})
    assert not someone_elses_hook.sender.is_self and someone_elses_hook.txn_id is None
    assert one(message(author={"id": "10", "username": "bridge-bot"})).sender.is_self


def test_system_messages_are_not_chat() -> None:
    assert convert(message(type=7), ACCOUNT) == []  # "bob joined the server"


def test_edit_delete_reactions_typing() -> None:
    edit = one(
        {**message(content="new", edited_timestamp="2026-01-02T03:06:00+00:00"), "t": "MESSAGE_UPDATE"}
    )
    assert isinstance(edit, Edit) and edit.target_id == "500" and edit.text == "new"
    assert (
        convert(
            {**BASE, "t": "MESSAGE_UPDATE", "d": {"id": "500", "channel_id": "30", "embeds": []}}, ACCOUNT
        )
        == []
    )
    gone = one({**BASE, "t": "MESSAGE_DELETE", "d": {"id": "500", "channel_id": "30"}})
    assert isinstance(gone, Delete) and gone.target_id == "500"
    bulk = convert(
        {**BASE, "t": "MESSAGE_DELETE_BULK", "d": {"ids": ["1", "2"], "channel_id": "30"}}, ACCOUNT
    )
    assert [d.target_id for d in bulk] == ["1", "2"]
    react = {"user_id": "20", "channel_id": "30", "message_id": "500", "emoji": {"id": None, "name": "👍"}}
    added = one({**BASE, "t": "MESSAGE_REACTION_ADD", "d": react})
    assert isinstance(added, Reaction) and added.emoji == "👍" and added.action is ReactionAction.ADD
    custom = {**react, "emoji": {"id": "9", "name": "blob"}}
    removed = one({**BASE, "t": "MESSAGE_REACTION_REMOVE", "d": custom})
    assert removed.emoji == ":blob:" and removed.action is ReactionAction.REMOVE
    typing = one({**BASE, "t": "TYPING_START", "d": {"user_id": "20", "channel_id": "30", "timestamp": 1}})
    assert isinstance(typing, Typing) and typing.user.user_id == "20"


def test_members_join_and_leave_every_channel_of_the_guild() -> None:
    joined = convert(
        {**BASE, "t": "GUILD_MEMBER_ADD", "channels": ["30", "31"], "d": {"guild_id": "40", "user": BOB}},
        ACCOUNT,
    )
    assert [(e.conversation_id, e.action) for e in joined] == [("30", "join"), ("31", "join")]
    assert all(isinstance(e, MembershipChange) for e in joined)
    [left] = convert({**BASE, "t": "GUILD_MEMBER_REMOVE", "channels": ["30"], "d": {"user": BOB}}, ACCOUNT)
    assert left.action is MembershipAction.LEAVE


def test_unknown_dispatches_convert_to_nothing() -> None:
    assert convert({**BASE, "t": "PRESENCE_UPDATE", "d": {}}, ACCOUNT) == []


@pytest.mark.parametrize(
    "payload",
    [
        {**message(), "v": 2},
        {**message(), "d": "nope"},
        {**message(), "self_id": None},
        message(timestamp="yesterday"),
        message(timestamp="2026-01-02T03:04:05"),
        message(author=None),
        message(content=5),
        message(attachments=[{"id": "1"}]),
        {**BASE, "t": "MESSAGE_REACTION_ADD", "d": {"user_id": "2", "channel_id": "3", "message_id": "4"}},
        {**BASE, "t": "GUILD_MEMBER_ADD", "channels": "30", "d": {"user": BOB}},
        ["not", "a", "mapping"],
    ],
)
def test_malformed_payloads_raise_malformed_payload(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        convert(payload, ACCOUNT)


def test_a_bot_sends_nonce_names_its_bridge_transaction() -> None:
    txn = "mb-0123456789abcdef0123456789abcdef"
    nonce = nonce_for(txn, 0)
    assert len(nonce) <= 25 and txn_from_nonce(nonce) == txn
    assert txn_from_nonce(nonce_for(txn, 1)) is None  # only the first part carries the transaction
    assert txn_from_nonce(nonce_for("txn-from-elsewhere", 0)) is None and len(nonce_for("x" * 99, 0)) == 25
    echo = one(message(author={"id": "10", "username": "bridge-bot"}, nonce=nonce))
    assert echo.sender.is_self and echo.txn_id == txn
    assert one(message(nonce=nonce)).txn_id is None  # someone else's message never claims our transaction
