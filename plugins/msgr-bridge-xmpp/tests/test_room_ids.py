"""Reactions (XEP-0444), retractions (XEP-0424) and read markers (XEP-0333) in a room name the room's
stanza-id, both ways.

Against a real Prosody, with a second slixmpp client (bob) in the room.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from slixmpp import JID
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import Delete, Message, OutboundMessage, Reaction, ReadReceipt
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.prosody import ProsodyServer


@pytest.fixture
async def room_me(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> AsyncIterator[tuple[str, Running]]:
    room = await bob.create_room(f"ids-{uuid.uuid4().hex[:8]}")
    me = await Running(*make_connector(prosody, *users["me"], rooms=[room])).start()
    yield room, me
    await me.stop()


async def test_room_reactions_use_the_room_stanza_id(room_me: tuple[str, Running], bob: Peer) -> None:
    room, me = room_me
    theirs = bob.send(room, "react to me", mtype="groupchat")
    their_stanza_id = (await bob.wait_for(lambda m: m["body"] == "react to me"))["stanza_id"]["id"]
    assert their_stanza_id and their_stanza_id != theirs
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == theirs)

    await me.connector.react(room, theirs, "👍", ReactionAction.ADD)
    got = await bob.wait_for(lambda m: m["reactions"]["values"] == {"👍"})
    assert got["reactions"]["id"] == their_stanza_id
    mine = await me.wait_event(lambda e: isinstance(e, Reaction) and e.sender.is_self)  # the room's echo
    assert (mine.target_id, mine.emoji) == (theirs, "👍")

    txn = f"txn-{uuid.uuid4().hex}"
    await me.connector.send_message(room, OutboundMessage(txn_id=txn, text="react to me too"))
    my_stanza_id = (await bob.wait_for(lambda m: m["body"] == "react to me too"))["stanza_id"]["id"]
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == txn)  # the reflection
    reaction = bob.client.make_message(mto=JID(room), mtype="groupchat")
    bob.client.plugin["xep_0444"].set_reactions(reaction, my_stanza_id, ["🎉"])
    reaction.send()
    event = await me.wait_event(lambda e: isinstance(e, Reaction) and not e.sender.is_self)
    assert (event.target_id, event.emoji, event.sender.user_id) == (txn, "🎉", f"{room}/bob")

    await me.connector.react(room, "long-gone-id", "👀", ReactionAction.ADD)  # unknown: goes out as given
    got = await bob.wait_for(lambda m: m["reactions"]["values"] == {"👀"})
    assert got["reactions"]["id"] == "long-gone-id"


async def test_room_retractions_use_the_room_stanza_id(room_me: tuple[str, Running], bob: Peer) -> None:
    room, me = room_me
    txn = f"txn-{uuid.uuid4().hex}"
    await me.connector.send_message(room, OutboundMessage(txn_id=txn, text="oops"))
    my_stanza_id = (await bob.wait_for(lambda m: m["body"] == "oops"))["stanza_id"]["id"]
    assert my_stanza_id and my_stanza_id != txn
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == txn)
    await me.connector.delete(room, txn)
    got = await bob.wait_for(lambda m: bool(m["retract"]["id"]))
    assert got["retract"]["id"] == my_stanza_id

    theirs = bob.send(room, "never mind", mtype="groupchat")
    their_stanza_id = (await bob.wait_for(lambda m: m["body"] == "never mind"))["stanza_id"]["id"]
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == theirs)
    bob.client.plugin["xep_0424"].send_retraction(JID(room), their_stanza_id, mtype="groupchat")
    event = await me.wait_event(lambda e: isinstance(e, Delete) and not e.sender.is_self)
    assert (event.target_id, event.sender.user_id) == (theirs, f"{room}/bob")
    assert not me.events(lambda e: isinstance(e, Message) and "retract" in e.text.lower())


async def test_room_read_markers_use_the_room_stanza_id(room_me: tuple[str, Running], bob: Peer) -> None:
    room, me = room_me
    theirs = bob.send(room, "read me", mtype="groupchat")
    their_stanza_id = (await bob.wait_for(lambda m: m["body"] == "read me"))["stanza_id"]["id"]
    assert their_stanza_id and their_stanza_id != theirs
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == theirs)
    await me.connector.mark_read(room, theirs)
    got = await bob.wait_for(lambda m: bool(m["displayed"]["id"]))
    assert got["displayed"]["id"] == their_stanza_id
    mine = await me.wait_event(lambda e: isinstance(e, ReadReceipt) and e.reader.is_self)  # the room's echo
    assert mine.up_to_id == theirs

    txn = f"txn-{uuid.uuid4().hex}"
    await me.connector.send_message(room, OutboundMessage(txn_id=txn, text="read me too"))
    my_stanza_id = (await bob.wait_for(lambda m: m["body"] == "read me too"))["stanza_id"]["id"]
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == txn)
    bob.client.plugin["xep_0333"].send_marker(JID(room), my_stanza_id, "displayed", mtype="groupchat")
    event = await me.wait_event(lambda e: isinstance(e, ReadReceipt) and not e.reader.is_self)
    assert (event.up_to_id, event.reader.user_id) == (txn, f"{room}/bob")
