"""The remembered message ids and room stanza-ids survive a restart (a new connector, the same state store).

Against a real Prosody with bob in the room; the ring of stored segments on its own, with the project's
in-memory state store.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from msgr_bridge_xmpp.idstore import PREFIX, SEGMENT, SEGMENTS, IdStore
from msgr_bridge_xmpp.replies import LIMIT, Entry
from slixmpp import JID
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import Message, OutboundMessage, Reaction, ReadReceipt
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
    """A crash loses at most one flush interval: the store catches up while the connector runs."""
    room = await bob.create_room(f"flush-{uuid.uuid4().hex[:8]}")
    state = MemoryStateStore()
    me = await Running(
        *make_connector(prosody, *users["me"], rooms=[room], state=state, id_flush_interval=0.1)
    ).start()
    try:
        theirs = bob.send(room, "write me down", mtype="groupchat")
        stanza_id = (await bob.wait_for(lambda m: m["body"] == "write me down"))["stanza_id"]["id"]
        expected = (room, theirs, f"{room}/bob", stanza_id)

        async def stored() -> bool:  # with bob's occupant-id: Prosody's rooms give one (XEP-0421)
            return any(e[:4] == expected and e[4] for e in await IdStore(state).load())

        await wait_until(stored)
        # a receipt naming the room's stanza-id maps back too (inbound read markers)
        bob.client.plugin["xep_0333"].send_marker(JID(room), stanza_id, "displayed", mtype="groupchat")
        read = await me.wait_event(lambda e: isinstance(e, ReadReceipt) and not e.reader.is_self)
        assert read.up_to_id == theirs
    finally:
        await me.stop()


class CountingStore(MemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.fail_next = False

    async def set(self, key: str, value: Any) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("database unavailable")
        self.writes.append(key)
        await super().set(key, value)


def entries(start: int, stop: int) -> list[Entry]:
    return [
        ("room@conf.example.org", f"m{i}", "room@conf.example.org/bob", f"s{i}", None)
        for i in range(start, stop)
    ]


async def test_the_stored_ids_are_bounded_and_written_a_segment_at_a_time() -> None:
    state = CountingStore()
    store = IdStore(state)
    assert await store.flush(entries(0, 1)) == 1  # one new id rewrites one key, not the whole map
    total = 3 * LIMIT + 17
    for start in range(1, total, 100):
        assert await store.flush(entries(start, min(start + 100, total))) <= 2
    assert await store.flush([]) == 0
    assert len([k for k in state.values if k.startswith(PREFIX)]) == SEGMENTS
    loaded = await IdStore(state).load()
    assert LIMIT - SEGMENT < len(loaded) <= LIMIT  # the oldest were dropped
    assert loaded == entries(total - len(loaded), total)  # the newest, in order

    # a new instance carries on in the newest segment (no slot wasted), still within the bound
    again = IdStore(state)
    await again.load()
    state.writes.clear()
    assert await again.flush(entries(total, total + 1)) == 1
    reloaded = await IdStore(state).load()
    assert reloaded[-1] == entries(total, total + 1)[0] and len(reloaded) == len(loaded) + 1


async def test_a_failed_write_is_retried_by_the_next_flush_and_junk_is_skipped() -> None:
    state = CountingStore()
    store = IdStore(state)
    state.fail_next = True
    with pytest.raises(OSError):
        await store.flush(entries(0, 3))
    assert store.unwritten  # the connector's regular flush looks at this
    assert await store.flush([]) == 1  # what failed is written now
    assert not store.unwritten
    assert await IdStore(state).load() == entries(0, 3)

    await state.set(f"{PREFIX}7", "not a segment")
    await state.set(f"{PREFIX}8", {"seq": 9, "entries": []})  # in the wrong slot
    current = await state.get(f"{PREFIX}0")
    await state.set(f"{PREFIX}0", {**current, "entries": [*current["entries"], ["x", 1, None, None]]})
    reader = IdStore(state)
    assert await reader.load() == entries(0, 3)
    assert reader.skipped == 3


async def test_entries_without_an_occupant_id_keep_the_four_item_form() -> None:
    """Stores written before occupant-ids were remembered read back as having none, and an entry without
    one is still written as four items (what an older version can read)."""
    state = MemoryStateStore()
    room, bob = "room@conf.example.org", "room@conf.example.org/bob"
    await state.set(
        f"{PREFIX}0",
        {"seq": 0, "entries": [[room, "m0", bob, "s0"], ["alice@ex.org", "m1", "alice@ex.org", None]]},
    )
    store = IdStore(state)
    assert await store.load() == [
        (room, "m0", bob, "s0", None),
        ("alice@ex.org", "m1", "alice@ex.org", None, None),
    ]
    await store.flush([(room, "m2", bob, "s2", "occ-bob"), (room, "m3", bob, None, None)])
    written = (await state.get(f"{PREFIX}0"))["entries"]
    assert written[2:] == [[room, "m2", bob, "s2", "occ-bob"], [room, "m3", bob, None]]
    assert (await IdStore(state).load())[2:] == [
        (room, "m2", bob, "s2", "occ-bob"),
        (room, "m3", bob, None, None),
    ]
