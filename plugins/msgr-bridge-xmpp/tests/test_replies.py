"""Replies (XEP-0461) both ways, 1:1 and in a room, against a real Prosody and a second slixmpp client."""

from __future__ import annotations

import uuid

from slixmpp import JID
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import Message, OutboundMessage
from msgr_bridge.testing.prosody import ProsodyServer


def out(text: str, reply_to: str | None = None) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{uuid.uuid4().hex}", text=text, reply_to=reply_to)


async def test_direct_replies_both_ways(me: Running, bob: Peer) -> None:
    theirs = bob.send(me.connector.own_jid, "question?")
    await me.wait_event(lambda e: isinstance(e, Message) and e.text == "question?")
    answer = out("answer", reply_to=theirs)
    await me.connector.send_message(bob.jid, answer)
    got = await bob.wait_for(lambda m: m["body"] == "answer")
    assert (got["reply"]["id"], got["reply"]["to"]) == (theirs, bob.jid)

    reply = bob.client.plugin["xep_0461"].make_reply(
        me.connector.own_jid, answer.txn_id, fallback="answer", mto=me.connector.own_jid, mbody="thanks",
        mtype="chat",
    )  # fmt: skip
    reply.send()
    event = await me.wait_event(lambda e: isinstance(e, Message) and e.reply_to is not None)
    assert event.reply_to == answer.txn_id
    assert event.text == "thanks"  # the quoted fallback ("> answer") is not part of the text


async def test_room_replies_use_the_room_stanza_id(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    room = await bob.create_room(f"replies-{uuid.uuid4().hex[:8]}")
    me = await Running(*make_connector(prosody, *users["me"], rooms=[room])).start()
    try:
        theirs = bob.send(room, "room question?", mtype="groupchat")
        reflected = await bob.wait_for(lambda m: m["body"] == "room question?")
        their_stanza_id = reflected["stanza_id"]["id"]
        assert their_stanza_id and their_stanza_id != theirs
        inbound = await me.wait_event(lambda e: isinstance(e, Message) and e.text == "room question?")
        assert inbound.remote_id == theirs

        answer = out("room answer", reply_to=inbound.remote_id)
        await me.connector.send_message(room, answer)
        got = await bob.wait_for(lambda m: m["body"] == "room answer")
        assert (got["reply"]["id"], str(got["reply"]["to"])) == (their_stanza_id, f"{room}/bob")

        my_nick = JID(me.connector.own_jid).user
        my_stanza_id = got["stanza_id"]["id"]
        bob.client.plugin["xep_0461"].make_reply(
            f"{room}/{my_nick}", my_stanza_id, mto=room, mbody="room thanks", mtype="groupchat"
        ).send()
        event = await me.wait_event(lambda e: isinstance(e, Message) and e.text == "room thanks")
        assert event.reply_to == answer.txn_id  # the room's stanza-id maps back to our remote id
    finally:
        await me.stop()


async def test_reply_to_an_unknown_message_goes_out_as_given(me: Running, bob: Peer) -> None:
    await me.connector.send_message(bob.jid, out("about that", reply_to="long-gone-id"))
    got = await bob.wait_for(lambda m: m["body"] == "about that")
    assert got["reply"]["id"] == "long-gone-id" and not got["reply"]["to"]
