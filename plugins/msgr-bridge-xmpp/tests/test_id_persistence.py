"""The remembered message ids and room stanza-ids survive a restart (a new connector, the same state store).

Against a real Prosody with bob in the room; the bounded maps on their own, with the project's in-memory
state store (``MemoryStateStore``, which behaves as the database one).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from msgr_bridge_xmpp.memory import LIMIT, Known, MessageMemory, key
from slixmpp import JID
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import Message, OutboundMessage, Reaction, ReadReceipt, TransientError
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.prosody import ProsodyServer
from msgr_bridge.testing.waiting import wait_until


def out(text: str, reply_to: str | None = None) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{uuid.uuid4().hex}", text=text, reply_to=reply_to)


async def test_room_stanza_ids_seen_before_a_restart_are_used_after_it(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    room = await bob.create_room(f"restart-ids-{uuid.uuid4().hex[:8]}")
    state = MemoryStateStore()
    before = await Running(*make_connector(prosody, *users["me"], rooms=[room], state=state)).start()
    theirs = bob.send(room, "seen before the restart", mtype="groupchat")
    their_stanza_id = (await bob.wait_for(lambda m: m["body"] == "seen before the restart"))["stanza_id"][
        "id"
    ]
    assert their_stanza_id and their_stanza_id != theirs
    await before.wait_event(lambda e: isinstance(e, Message) and e.remote_id == theirs)
    mine = out("mine, before the restart")
    await before.connector.send_message(room, mine)
    my_stanza_id = (await bob.wait_for(lambda m: m["body"] == mine.text))["stanza_id"]["id"]
    await before.wait_event(lambda e: isinstance(e, Message) and e.remote_id == mine.txn_id)  # reflection
    await before.stop()  # flushes what it remembered

    after = await Running(*make_connector(prosody, *users["me"], rooms=[room], state=state)).start()
    try:
        assert after.connector is not before.connector and not after.snapshots[-1].history
        await after.connector.react(room, theirs, "👍", ReactionAction.ADD)
        got = await bob.wait_for(lambda m: m["reactions"]["values"] == {"👍"})
        assert got["reactions"]["id"] == their_stanza_id

        await after.connector.mark_read(room, theirs)
        got = await bob.wait_for(lambda m: bool(m["displayed"]["id"]))
        assert got["displayed"]["id"] == their_stanza_id

        await after.connector.send_message(room, out("about that", reply_to=theirs))
        got = await bob.wait_for(lambda m: m["body"] == "about that")
        assert (got["reply"]["id"], str(got["reply"]["to"])) == (their_stanza_id, f"{room}/bob")

        await after.connector.delete(room, mine.txn_id)
        got = await bob.wait_for(lambda m: bool(m["retract"]["id"]))
        assert got["retract"]["id"] == my_stanza_id

        # inbound too: bob reacts by the room's stanza-id of a message from before the restart
        reaction = bob.client.make_message(mto=JID(room), mtype="groupchat")
        bob.client.plugin["xep_0444"].set_reactions(reaction, my_stanza_id, ["🎉"])
        reaction.send()
        event = await after.wait_event(lambda e: isinstance(e, Reaction) and not e.sender.is_self)
        assert (event.target_id, event.emoji) == (mine.txn_id, "🎉")
    finally:
        await after.stop()


async def test_ids_are_written_while_connected_without_waiting_for_disconnect(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    """A crash loses nothing: each id is in the store as soon as it is seen, before any disconnect."""
    room = await bob.create_room(f"flush-{uuid.uuid4().hex[:8]}")
    state = MemoryStateStore()
    me = await Running(
        *make_connector(prosody, *users["me"], rooms=[room], state=state, id_flush_interval=5)
    ).start()
    try:
        theirs = bob.send(room, "write me down", mtype="groupchat")
        stanza_id = (await bob.wait_for(lambda m: m["body"] == "write me down"))["stanza_id"]["id"]
        memory = MessageMemory(state)  # a second reader of the same store

        async def stored() -> bool:  # with bob's occupant-id: Prosody's rooms give one (XEP-0421)
            known = await memory.known(room, theirs)
            return known is not None and known[:2] == (f"{room}/bob", stanza_id) and bool(known[2])

        await wait_until(stored)
        # a receipt naming the room's stanza-id maps back too (inbound read markers)
        bob.client.plugin["xep_0333"].send_marker(JID(room), stanza_id, "displayed", mtype="groupchat")
        read = await me.wait_event(lambda e: isinstance(e, ReadReceipt) and not e.reader.is_self)
        assert read.up_to_id == theirs
    finally:
        await me.stop()


ROOM, BOB = "room@conf.example.org", "room@conf.example.org/bob"


async def test_the_remembered_ids_are_bounded_and_keep_the_newest() -> None:
    state = MemoryStateStore()
    memory = MessageMemory(state)
    total = 3 * LIMIT + 17
    for i in range(total):
        await memory.remember(ROOM, f"m{i}", BOB, f"s{i}")
    assert len(state.maps["messages"].entries) == LIMIT  # never more, however many were seen
    assert len(state.maps["stanza_ids"].entries) == LIMIT
    assert await state.maps["messages"].dropped() == total - LIMIT
    again = MessageMemory(state)  # after a restart: the same maps
    assert await again.known(ROOM, f"m{total - 1}") == Known(BOB, f"s{total - 1}")
    assert await again.original(ROOM, f"s{total - LIMIT}") == Known(BOB, f"s{total - LIMIT}")
    assert await again.known(ROOM, "m0") is None and await again.canonical(ROOM, "s0") == "s0"
    assert await again.outbound(ROOM, f"m{total - 1}", groupchat=True) == (f"s{total - 1}", BOB)


async def test_the_first_author_keeps_an_id_and_long_or_junk_entries_are_handled() -> None:
    state = MemoryStateStore()
    memory = MessageMemory(state)
    await memory.remember(ROOM, "m1", BOB, "s1", "occ-bob")
    await memory.remember(ROOM, "m1", f"{ROOM}/mallory", "s9")  # reusing bob's id: not remembered
    assert await memory.known(ROOM, "m1") == Known(BOB, "s1", "occ-bob")
    assert await memory.canonical(ROOM, "s9") == "s9"
    huge = "x" * 10_000  # an id from the wire: stored under a short key
    await memory.remember(ROOM, huge, BOB, "s2")
    assert await memory.original(ROOM, "s2") == Known(BOB, "s2")
    assert all(len(k) < 500 for k in state.maps["messages"].entries)
    await state.maps["messages"].set(key(ROOM, "junk"), {"not": "an entry"})
    assert await memory.known(ROOM, "junk") is None


async def test_what_an_older_version_stored_is_moved_into_the_maps_once() -> None:
    """The ring of ``ids:N`` keys (entries of four items, from before occupant-ids, or five) and the
    ``reaction-sets:N`` buckets are read oldest first, moved, and deleted; junk is skipped."""
    state = MemoryStateStore()
    alice = "alice@ex.org"
    await state.set("ids:1", {"seq": 21, "entries": [[ROOM, "m2", BOB, "s2", "occ-bob"], ["x", 1, None]]})
    await state.set("ids:0", {"seq": 20, "entries": [[ROOM, "m0", BOB, "s0"], [alice, "m1", alice, None]]})
    await state.set("ids:7", "not a segment")
    await state.set("reaction-sets:3", [[ROOM, "m0", BOB, ["🎉"]], [ROOM, "m0", BOB, ["👍"]], "junk"])
    await state.set("sync", "kept")
    memory = MessageMemory(state)
    assert await memory.import_legacy() == 5  # three ids, two sets (one of them newer)
    assert await memory.known(ROOM, "m0") == Known(BOB, "s0")
    assert await memory.known(alice, "m1") == Known(alice)
    assert await memory.original(ROOM, "s2") == Known(BOB, "s2", "occ-bob")
    assert await memory.change_reactions((ROOM, "m0", BOB), lambda old: old or []) == (["🎉"], ["🎉"])
    assert state.values == {"sync": "kept"}
    assert await MessageMemory(state).import_legacy() == 0


async def test_a_state_store_outage_ends_the_stream_with_a_transient_error(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    """The supervisor reconnects on a TransientError, and the catch-up fetches what was missed."""
    me = await Running(*make_connector(prosody, *users["me"])).start()

    async def unavailable(*_args: object, **_kwargs: object) -> None:
        raise OSError("database unavailable")

    me.connector.memory.messages.get = unavailable  # type: ignore[method-assign]
    try:
        bob.send(users["me"][0], "while the database is away")
        assert me.task is not None
        with pytest.raises(TransientError, match="database unavailable"):
            await asyncio.wait_for(me.task, 10)
        me.task = None
    finally:
        await me.stop()
