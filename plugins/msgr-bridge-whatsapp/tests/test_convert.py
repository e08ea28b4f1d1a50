"""``convert`` on payloads made from real neonize protobufs (``as_dict``, what the connector pushes)."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_whatsapp.convert import convert
from msgr_bridge_whatsapp.inbound import as_dict
from msgr_bridge_whatsapp.outgoing import edit_message, revoke_message
from msgr_bridge_whatsapp.outgoing import reaction_message as reaction
from msgr_bridge_whatsapp.testing import jid, message_event, receipt_event, typing_event
from neonize.proto import Neonize_pb2 as N
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    FutureProofMessage,
    ImageMessage,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
from neonize.proto.waWeb.WAWebProtobufsWeb_pb2 import WebMessageInfo

from conftest import BOB, GROUP, ME
from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Delete,
    Edit,
    MembershipAction,
    MembershipChange,
    Message,
    MessageReceipt,
    Reaction,
    ReactionAction,
    ReadReceipt,
    ReceiptState,
    Typing,
)

ACCOUNT = Account(id="acct-1", network="whatsapp", remote_user_id=ME)


def payload(kind: str, event: Any, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": kind,
        "self": ME,
        "event": as_dict(event) if hasattr(event, "DESCRIPTOR") else event,
        **extra,
    }


def one(kind: str, event: Any, **extra: Any) -> Any:
    (converted,) = convert(payload(kind, event, **extra), ACCOUNT)
    return converted


def test_text_and_extended_text_with_a_reply_and_mentions() -> None:
    plain = one("message", message_event(BOB, BOB, WAMessage(conversation="hi"), id="A", ts=1_700_000_000))
    assert isinstance(plain, Message) and plain.text == "hi" and plain.timestamp.year == 2023
    context = ContextInfo(stanzaID="A", participant=BOB, mentionedJID=[ME])
    reply = WAMessage(extendedTextMessage=ExtendedTextMessage(text="re: hi", contextInfo=context))
    answer = one("message", message_event(GROUP, BOB, reply, id="B"))
    assert answer.text == "re: hi" and answer.reply_to == "A" and answer.conversation_id == GROUP
    assert [m.user_id for m in answer.mentions] == [ME]


def test_media_becomes_an_attachment_with_where_it_was_stored() -> None:
    image = WAMessage(
        imageMessage=ImageMessage(caption="look", mimetype="image/jpeg", fileLength=1234, mediaKey=b"k" * 32)
    )
    event = message_event(BOB, BOB, image, id="I")
    pushed = payload("message", event, media=[{"url": "https://b.example/s/x", "size": 1234}])
    assert "mediaKey" not in str(pushed)  # key material is never stored
    (message,) = convert(pushed, ACCOUNT)
    assert isinstance(message, Message) and message.text == "look"
    (attachment,) = message.attachments
    assert (attachment.name, attachment.mime_type, attachment.size) == ("image.jpeg", "image/jpeg", 1234)
    assert attachment.url == "https://b.example/s/x"
    doc = WAMessage(
        documentMessage=DocumentMessage(fileName="r.pdf", mimetype="application/pdf", fileLength=9)
    )
    unstored = one("message", message_event(BOB, BOB, doc, id="D"), media=[{}])
    assert unstored.attachments[0].name == "r.pdf" and unstored.attachments[0].url is None


def reacted(emoji: str, message_id: str) -> N.Message:
    """Bob reacts to our message A (the shape a phone sends)."""
    return message_event(BOB, BOB, reaction(BOB, "A", emoji, from_me=True, sender=None), id=message_id)


def test_edits_revokes_and_reactions_from_others() -> None:
    edited = edit_message(BOB, "A", "fixed")  # the same shape a phone sends
    edit = one("message", message_event(BOB, BOB, edited, id="E"))
    assert isinstance(edit, Edit) and edit.target_id == "A" and edit.text == "fixed"
    delete = one("message", message_event(BOB, BOB, revoke_message(BOB, "A"), id="R"))
    assert isinstance(delete, Delete) and delete.target_id == "A"
    added = one(
        "message", message_event(BOB, BOB, reaction(BOB, "A", "🎉", from_me=True, sender=None), id="X")
    )
    assert isinstance(added, Reaction) and added.emoji == "🎉" and added.action == ReactionAction.ADD
    # one reaction per person: a new one replaces theirs (the connector says which), an empty one removes it
    changed = payload(
        "message", message_event(BOB, BOB, reaction(BOB, "A", "👍", from_me=True, sender=None), id="Z")
    )
    replaced = convert({**changed, "previous_reaction": "🎉"}, ACCOUNT)
    assert [(r.action, r.emoji) for r in replaced] == [
        (ReactionAction.REMOVE, "🎉"),
        (ReactionAction.ADD, "👍"),
    ]
    empty = payload(
        "message", message_event(BOB, BOB, reaction(BOB, "A", "", from_me=True, sender=None), id="Y")
    )
    (removed,) = convert({**empty, "previous_reaction": "👍"}, ACCOUNT)
    assert isinstance(removed, Reaction) and removed.action == ReactionAction.REMOVE and removed.emoji == "👍"
    assert convert(empty, ACCOUNT) == []  # a removal of a reaction never seen: nothing to remove


def test_an_edit_wrapped_as_whatsmeow_delivers_it() -> None:
    inner = WAMessage(conversation="v2")
    wrapped = WAMessage(editedMessage=FutureProofMessage(message=inner))  # the edited content, unwrapped
    assert one("message", message_event(BOB, BOB, wrapped, id="W")).text == "v2"


def test_read_receipts_typing_and_delivery_receipts() -> None:
    events = convert(payload("receipt", receipt_event(BOB, BOB, ["A", "B"])), ACCOUNT)
    ours = [(e.target_id, e.state, e.recipient.user_id) for e in events if isinstance(e, MessageReceipt)]
    assert ours == [("A", ReceiptState.READ, BOB), ("B", ReceiptState.READ, BOB)]  # Bob read our messages
    [marker] = [e for e in events if isinstance(e, ReadReceipt)]
    assert marker.up_to_id == "B" and marker.reader.user_id == BOB
    delivered = one("receipt", receipt_event(BOB, BOB, ["A"], kind=N.Receipt.DELIVERED))
    assert isinstance(delivered, MessageReceipt) and delivered.state is ReceiptState.DELIVERED
    in_group = one("receipt", receipt_event(GROUP, BOB, ["G"], kind=N.Receipt.DELIVERED))
    assert in_group.conversation_id == GROUP and in_group.recipient.user_id == BOB
    assert convert(payload("receipt", receipt_event(BOB, BOB, ["A"], kind=N.Receipt.SENDER)), ACCOUNT) == []
    stopped = one("presence", typing_event(BOB, BOB, active=False))
    assert isinstance(stopped, Typing) and not stopped.active
    assert one("presence", typing_event(BOB, BOB, active=True)).active


def test_group_members_and_name() -> None:
    event = N.GroupInfoEvent(
        JID=jid(GROUP), Notify="", Sender=jid(BOB), Timestamp=1_700_000_000, PrevParticipantsVersionID="",
        ParticipantVersionID="", JoinReason="", Join=[jid(ME)], Leave=[jid("447700900003@s.whatsapp.net")],
        Name=N.GroupName(Name="Team", NameSetAt=0, NameSetBy=jid(BOB)),
    )  # fmt: skip
    changes = convert(payload("group", event), ACCOUNT)
    assert all(isinstance(c, MembershipChange) and c.conversation_id == GROUP for c in changes)
    assert [(c.user.user_id, c.action) for c in changes] == [
        (ME, MembershipAction.JOIN),
        ("447700900003@s.whatsapp.net", MembershipAction.LEAVE),
        (BOB, MembershipAction.RENAME),
    ]
    assert changes[2].new_name == "Team"


def test_history_messages() -> None:
    web = WebMessageInfo(
        key=MessageKey(remoteJID=GROUP, fromMe=False, ID="H1"), participant=BOB, pushName="Bob",
        messageTimestamp=1_600_000_000, message=WAMessage(conversation="old news"),
    )  # fmt: skip
    message = one("history", {"chat": GROUP, "message": as_dict(web)})
    assert isinstance(message, Message) and message.text == "old news" and message.remote_id == "H1"
    assert message.sender.user_id == BOB and message.timestamp.year == 2020
    mine = WebMessageInfo(
        key=MessageKey(remoteJID=BOB, fromMe=True, ID="H2"), message=WAMessage(conversation="x")
    )
    assert one("history", {"chat": BOB, "message": as_dict(mine)}).sender.user_id == ME


@pytest.mark.parametrize(
    "bad",
    [None, [], {"v": 1}, {"v": 1, "kind": "message", "event": {}}, {"v": 1, "kind": ["x"]},
     {"v": 1, "kind": "message", "event": {"Info": {"MessageSource": {"Chat": 5}, "ID": "x"}}},
     {"v": 1, "kind": "receipt", "event": {"MessageSource": "nope"}}],
)  # fmt: skip
def test_malformed_payloads_are_refused(bad: Any) -> None:
    with pytest.raises(MalformedPayload):
        convert(bad, ACCOUNT)
