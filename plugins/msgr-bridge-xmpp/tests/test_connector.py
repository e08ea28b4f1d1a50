"""The connector against a real Prosody, with a second real slixmpp client as the other person."""

from __future__ import annotations

import uuid

import pytest
from slixmpp import JID
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import (
    Attachment,
    Delete,
    Edit,
    Message,
    NotSupported,
    OutboundMessage,
    Reaction,
    ReadReceipt,
    TransientError,
    Typing,
)
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.prosody import ProsodyServer


def out(text: str) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{uuid.uuid4().hex}", text=text)


async def test_inbound_direct_message(me: Running, bob: Peer) -> None:
    msg_id = bob.send(me.connector.own_jid, "hello bridge")
    event = await me.wait_event(lambda e: isinstance(e, Message) and e.text == "hello bridge")
    assert event.remote_id == msg_id
    assert event.conversation_id == bob.jid
    assert event.sender.user_id == bob.jid and not event.sender.is_self
    assert event.txn_id is None


async def test_outbound_direct_message(me: Running, bob: Peer) -> None:
    message = out("hi bob")
    result = await me.connector.send_message(bob.jid, message)
    assert result.remote_id == message.txn_id
    got = await bob.wait_for(lambda m: m["body"] == "hi bob")
    assert got["id"] == message.txn_id
    assert got["type"] == "chat"
    assert got["from"].bare == me.connector.own_jid


async def test_outbound_edit_delete_react_read_typing_arrive(me: Running, bob: Peer) -> None:
    first = out("typo")
    await me.connector.send_message(bob.jid, first)
    await me.connector.edit(bob.jid, first.txn_id, out("fixed"))
    fixed = await bob.wait_for(lambda m: m["replace"]["id"] == first.txn_id)
    assert fixed["body"] == "fixed"

    await me.connector.react(bob.jid, first.txn_id, "👍", ReactionAction.ADD)
    await me.connector.react(bob.jid, first.txn_id, "🎉", ReactionAction.ADD)
    both = await bob.wait_for(lambda m: len(m["reactions"]["values"]) == 2)
    assert both["reactions"]["id"] == first.txn_id
    assert both["reactions"]["values"] == {"👍", "🎉"}
    await me.connector.react(bob.jid, first.txn_id, "👍", ReactionAction.REMOVE)
    await bob.wait_for(lambda m: m["reactions"]["values"] == {"🎉"})

    await me.connector.delete(bob.jid, first.txn_id)
    await bob.wait_for(lambda m: m["retract"]["id"] == first.txn_id)

    theirs = bob.send(me.connector.own_jid, "read me")
    await me.connector.mark_read(bob.jid, theirs)
    await bob.wait_for(lambda m: m["displayed"]["id"] == theirs)

    await me.connector.set_typing(bob.jid, True)
    await bob.wait_for(lambda m: m["chat_state"] == "composing")
    await me.connector.set_typing(bob.jid, False)
    await bob.wait_for(lambda m: m["chat_state"] == "paused")


async def test_inbound_edit_delete_react_read_typing_convert(me: Running, bob: Peer) -> None:
    original = bob.send(me.connector.own_jid, "orig")
    correction = bob.client.plugin["xep_0308"].build_correction(original, me.connector.own_jid, mbody="new")
    correction.send()
    edit = await me.wait_event(lambda e: isinstance(e, Edit))
    assert (edit.target_id, edit.text, edit.sender.user_id) == (original, "new", bob.jid)

    bob.client.plugin["xep_0444"].send_reactions(me.connector.own_jid, original, ["❤️", "😂"])
    await me.wait_event(lambda e: isinstance(e, Reaction) and e.emoji == "😂")
    bob.client.plugin["xep_0444"].send_reactions(me.connector.own_jid, original, ["❤️"])
    removed = await me.wait_event(lambda e: isinstance(e, Reaction) and e.action == ReactionAction.REMOVE)
    assert (removed.emoji, removed.target_id) == ("😂", original)

    bob.client.plugin["xep_0424"].send_retraction(me.connector.own_jid, original)
    deleted = await me.wait_event(lambda e: isinstance(e, Delete))
    assert deleted.target_id == original and deleted.conversation_id == bob.jid

    mine = out("did you read it")
    await me.connector.send_message(bob.jid, mine)
    bob.client.plugin["xep_0333"].send_marker(me.connector.own_jid, mine.txn_id, "displayed")
    receipt = await me.wait_event(lambda e: isinstance(e, ReadReceipt))
    assert receipt.up_to_id == mine.txn_id and receipt.reader.user_id == bob.jid

    typing = bob.client.make_message(mto=me.connector.own_jid, mtype="chat")
    typing["chat_state"] = "composing"
    typing.send()
    event = await me.wait_event(lambda e: isinstance(e, Typing))
    assert event.active and event.user.user_id == bob.jid


async def test_group_chat_both_ways_and_echo(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    room = await bob.create_room(f"room-{uuid.uuid4().hex[:8]}")
    me = await Running(*make_connector(prosody, *users["me"], rooms=[room])).start()
    try:
        bob.send(room, "hello room", mtype="groupchat")
        inbound = await me.wait_event(lambda e: isinstance(e, Message) and e.text == "hello room")
        assert inbound.conversation_id == room
        assert inbound.sender.user_id == f"{room}/bob" and not inbound.sender.is_self

        message = out("hi from the bridge")
        await me.connector.send_message(room, message)
        got = await bob.wait_for(lambda m: m["body"] == "hi from the bridge")
        assert got["type"] == "groupchat" and got["id"] == message.txn_id
        echo = await me.wait_event(lambda e: isinstance(e, Message) and e.text == "hi from the bridge")
        assert echo.sender.is_self and echo.txn_id == message.txn_id and echo.remote_id == message.txn_id

        await me.connector.edit(room, message.txn_id, out("hi, edited"))
        edited = await bob.wait_for(lambda m: m["replace"]["id"] == message.txn_id)
        assert edited["type"] == "groupchat"

        my_nick = JID(me.connector.own_jid).user
        bob.send(f"{room}/{my_nick}", "psst, private")
        private = await me.wait_event(lambda e: isinstance(e, Message) and e.text == "psst, private")
        assert private.conversation_id == f"{room}/bob"
        await me.connector.send_message(private.conversation_id, out("private reply"))
        reply = await bob.wait_for(lambda m: m["body"] == "private reply")
        assert reply["type"] == "chat" and str(reply["from"]) == f"{room}/{my_nick}"
    finally:
        await me.stop()


async def test_undeclared_capabilities_raise_not_supported(me: Running, bob: Peer) -> None:
    caps = me.connector.capabilities
    assert not caps.attachments
    with_file = OutboundMessage(txn_id="t-file", text="see file", attachments=(Attachment(name="a.txt"),))
    with pytest.raises(NotSupported):
        await me.connector.send_message(bob.jid, with_file)
    with pytest.raises(NotSupported):
        await me.connector.send_message(f"{bob.jid}/someresource", out("x"))


async def test_send_while_disconnected_is_transient(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]]
) -> None:
    connector, _sink = make_connector(prosody, *users["me"])
    with pytest.raises(TransientError):
        await connector.send_message(users["bob"][0], out("nobody home"))
