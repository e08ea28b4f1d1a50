"""``convert``: Telegram payloads (built from Telethon's own TL types, as the connector builds them) to
canonical events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from msgr_bridge_telegram.client import payload
from msgr_bridge_telegram.convert import convert
from telethon.tl import types

from msgr_bridge import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Delete,
    Edit,
    MembershipAction,
    MembershipChange,
    Message,
    Reaction,
    ReactionAction,
    ReadReceipt,
    TextFormat,
    Typing,
)

ME, BOB = 1001, 1002
ACCOUNT = Account(id="acct-1", network="telegram", remote_user_id=str(ME))
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def message(text: str = "hi", *, peer: Any = None, sender: int | None = BOB, **kw: Any) -> types.Message:
    return types.Message(
        id=kw.pop("id", 5), peer_id=peer or types.PeerUser(BOB), date=WHEN, message=text,
        from_id=types.PeerUser(sender) if sender else None, **kw,
    )  # fmt: skip


def one(data: dict[str, Any]) -> Any:
    (event,) = convert(data, ACCOUNT)
    return event


def test_private_message_with_formatting_mentions_and_reply() -> None:
    entities = [types.MessageEntityBold(0, 5), types.MessageEntityMentionName(6, 3, ME)]
    reply = types.MessageReplyHeader(reply_to_msg_id=3)
    sent = message("hello you!", entities=entities, reply_to=reply)
    got = one(payload(types.UpdateNewMessage(sent, 2, 1), ME, names={str(BOB): "Bob"}))
    assert isinstance(got, Message)
    assert (got.conversation_id, got.remote_id, got.text, got.reply_to) == (
        f"user:{BOB}",
        "5",
        "hello you!",
        "3",
    )
    assert got.formatted == "<strong>hello</strong> you!" and got.format == TextFormat.HTML
    assert got.mentions[0].user_id == str(ME) and (got.mentions[0].offset, got.mentions[0].length) == (6, 3)
    assert got.sender.user_id == str(BOB) and got.sender.display_name == "Bob" and not got.sender.is_self
    assert got.timestamp == WHEN


def test_utf16_offsets_survive_emoji() -> None:
    text = "👍 bold"  # the emoji is two UTF-16 code units: entity offsets count those
    got = one(
        payload(types.UpdateNewMessage(message(text, entities=[types.MessageEntityBold(3, 4)]), 2, 1), ME)
    )
    assert got.formatted == "👍 <strong>bold</strong>"


def test_private_incoming_without_from_id_is_the_peer_and_outgoing_is_ours() -> None:
    theirs = one(payload(types.UpdateNewMessage(message(sender=None), 2, 1), ME))
    assert theirs.sender.user_id == str(BOB) and not theirs.sender.is_self
    mine = one(payload(types.UpdateNewMessage(message(sender=None, out=True), 3, 1), ME, txn_id="txn-9"))
    assert mine.sender.is_self and mine.txn_id == "txn-9"
    not_ours = one(payload(types.UpdateNewMessage(message(), 4, 1), ME, txn_id="txn-9"))
    assert not_ours.txn_id is None, "a txn id on someone else's message is ignored"


def test_forum_topic_is_the_thread_and_a_reply_inside_it_is_a_reply() -> None:
    peer = types.PeerChannel(77)
    in_topic = types.MessageReplyHeader(forum_topic=True, reply_to_msg_id=10)
    plain = one(payload(types.UpdateNewChannelMessage(message(peer=peer, reply_to=in_topic), 3, 1), ME))
    assert (plain.conversation_id, plain.thread_id, plain.reply_to) == ("channel:77", "10", None)
    header = types.MessageReplyHeader(forum_topic=True, reply_to_msg_id=12, reply_to_top_id=10)
    reply = one(payload(types.UpdateNewChannelMessage(message(peer=peer, reply_to=header), 4, 1), ME))
    assert (reply.thread_id, reply.reply_to) == ("10", "12")


def test_edit_delete_and_delete_in_channel() -> None:
    edit = one(payload(types.UpdateEditMessage(message("new", edit_date=WHEN), 3, 1), ME))
    assert isinstance(edit, Edit) and (edit.target_id, edit.text) == ("5", "new")
    deleted = convert(
        payload(types.UpdateDeleteMessages([5, 6], 4, 2), ME, conversation=f"chat:{55}"), ACCOUNT
    )
    assert [(d.conversation_id, d.target_id) for d in deleted if isinstance(d, Delete)] == [
        ("chat:55", "5"),
        ("chat:55", "6"),
    ]
    gone = one(payload(types.UpdateDeleteChannelMessages(77, [9], 5, 1), ME))
    assert isinstance(gone, Delete) and gone.conversation_id == "channel:77"


def test_reaction_changes_membership_read_and_typing() -> None:
    changes = {"added": [[BOB, "👍"]], "removed": [[ME, "🎉"]]}
    update = types.UpdateMessageReactions(types.PeerUser(BOB), 5, types.MessageReactions(results=[]))
    added, removed = convert(payload(update, ME, reactions=changes), ACCOUNT)
    assert isinstance(added, Reaction) and (added.emoji, added.action, added.target_id) == (
        "👍",
        ReactionAction.ADD,
        "5",
    )
    assert (
        isinstance(removed, Reaction) and removed.action == ReactionAction.REMOVE and removed.sender.is_self
    )
    kick = types.MessageActionChatDeleteUser(1003)
    service = types.MessageService(
        id=8, peer_id=types.PeerChat(55), date=WHEN, from_id=types.PeerUser(BOB), action=kick
    )
    kicked = one(payload(types.UpdateNewMessage(service, 6, 1), ME))
    assert isinstance(kicked, MembershipChange) and kicked.action == MembershipAction.KICK
    assert kicked.user.user_id == "1003" and kicked.actor is not None and kicked.actor.user_id == str(BOB)
    read = one(payload(types.UpdateReadHistoryOutbox(types.PeerUser(BOB), 5, 7, 1), ME))
    assert isinstance(read, ReadReceipt) and read.up_to_id == "5" and read.reader.user_id == str(BOB)
    mine = one(payload(types.UpdateReadHistoryInbox(types.PeerUser(BOB), 5, 0, 8, 1), ME))
    assert mine.reader.is_self
    typing = one(
        payload(types.UpdateChatUserTyping(55, types.PeerUser(BOB), types.SendMessageCancelAction()), ME)
    )
    assert isinstance(typing, Typing) and typing.conversation_id == "chat:55" and typing.active is False


def test_unused_updates_convert_to_nothing() -> None:
    assert convert(payload(types.UpdateMessageID(5, 42), ME), ACCOUNT) == []


DELETE = {"v": 1, "self_id": ME, "update": {"_": "UpdateDeleteMessages", "messages": [1]}}
REACTIONS = {
    "v": 1,
    "self_id": ME,
    "update": {"_": "UpdateMessageReactions", "peer": {"_": "PeerUser", "user_id": 2}, "msg_id": 1},
}


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"v": 2, "self_id": ME, "update": {"_": "UpdateNewMessage"}},
        {"v": 1, "self_id": "me", "update": {"_": "UpdateNewMessage"}},
        {"v": 1, "self_id": ME, "update": {"_": "UpdateNewMessage", "message": {"_": "Message", "id": 1}}},
        DELETE,  # no conversation
        {**DELETE, "conversation": "x:y"},
        {**REACTIONS, "reactions": {"added": [["x", 1]], "removed": []}},
    ],
)
def test_malformed_payloads_raise(bad: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        convert(bad, ACCOUNT)


def test_media_is_described_as_attachments() -> None:
    document = types.Document(
        id=42, access_hash=1, file_reference=b"r", date=WHEN, mime_type="application/pdf", size=2048, dc_id=2,
        attributes=[types.DocumentAttributeFilename("report.pdf")],
    )  # fmt: skip
    got = one(
        payload(
            types.UpdateNewMessage(message("see", media=types.MessageMediaDocument(document=document)), 2, 1),
            ME,
        )
    )
    (attachment,) = got.attachments
    assert (attachment.name, attachment.mime_type, attachment.size) == ("report.pdf", "application/pdf", 2048)
    assert attachment.remote_id == "document:42" and got.text == "see"
    sizes = [types.PhotoSize("s", 90, 90, 1000), types.PhotoSize("x", 800, 800, 64000)]
    photo = types.Photo(id=7, access_hash=1, file_reference=b"r", date=WHEN, sizes=sizes, dc_id=2)
    got = one(
        payload(types.UpdateNewMessage(message("", media=types.MessageMediaPhoto(photo=photo)), 3, 1), ME)
    )
    assert [(a.name, a.size, a.remote_id) for a in got.attachments] == [("photo.jpg", 64000, "photo:7")]


def test_an_album_is_one_message_with_its_captions_joined() -> None:
    """The later messages of an album (merged by ``album.py``) add their files and captions; a mention in a
    later caption moves with it."""
    photo = types.MessageMediaPhoto(photo=types.Photo(1, 2, b"", WHEN, [types.PhotoSize("y", 10, 10, 99)], 2))
    first = message("look", media=photo, grouped_id=9)
    later = message(
        "hé @me", id=6, media=photo, grouped_id=9, entities=[types.MessageEntityMentionName(3, 3, ME)]
    )
    data = payload(types.UpdateNewMessage(first, 2, 1), ME)
    data["album"] = [{"message": payload(types.UpdateNewMessage(later, 3, 1), ME)["update"]["message"]}]
    got = one(data)
    assert isinstance(got, Message) and got.remote_id == "5" and len(got.attachments) == 2
    assert got.text == "look\n\nhé @me" and got.formatted is None
    assert [(m.user_id, m.offset, m.length) for m in got.mentions] == [(str(ME), 9, 3)]
    with pytest.raises(MalformedPayload):
        convert({**data, "album": [{"message": "nope"}]}, ACCOUNT)
