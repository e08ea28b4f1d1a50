"""Catch-up across disconnects and a homeserver restart: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio

import pytest
from matrix_peer import Peer, Running, make_connector, start, wait_event
from mautrix.types import EventType, RoomID
from msgr_bridge_matrix.timeline import MAX_REMEMBERED_REACTIONS

from msgr_bridge.errors import TransientError
from msgr_bridge.schema import Message, OutboundMessage, Reaction, ReactionAction
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.synapse import SynapseServer


def history_ids(history: tuple[object, ...]) -> list[str]:
    return [p["event"]["event_id"] for p in history if p["event"].get("type") == "m.room.message"]  # type: ignore[index]


async def test_messages_sent_while_disconnected_come_back_once(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    room = await other.room_with(me, direct=True)
    state = MemoryStateStore()
    settings = {"timeline_limit": 3}  # smaller than the gap below: forces /messages backfill
    connector, sink = make_connector(synapse, me, state=state, settings=settings)
    first = await start(connector, sink)
    before = str(await other.client.send_text(RoomID(room), "before"))
    await wait_event(first, lambda e: isinstance(e, Message) and e.remote_id == before)
    await first.stop()
    missed = [str(await other.client.send_text(RoomID(room), f"missed {i}")) for i in range(8)]

    again, sink2 = make_connector(synapse, me, state=state, settings=settings)
    await again.connect()
    snapshot = await again.sync_state(None)
    assert history_ids(snapshot.history) == missed  # all of them, in order, and not "before" again
    assert snapshot.complete
    running = Running(again, sink2, asyncio.create_task(again.subscribe()))
    try:
        live = str(await other.client.send_text(RoomID(room), "live again"))
        await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == live)
        assert not any(
            p["event"].get("event_id") in missed for p in sink2.payloads
        )  # not doubled as live events
    finally:
        await running.stop()


async def test_password_login_stores_token_and_device_for_reuse(synapse: SynapseServer, me: Peer) -> None:
    connector, _ = make_connector(synapse, me)
    await connector.connect()
    secrets = connector.ctx.secrets
    token, device = await secrets.get("access_token"), await secrets.get("device_id")
    await connector.disconnect()
    reuse, _ = make_connector(synapse, me, secrets={"access_token": token, "device_id": device})
    await reuse.connect()
    assert reuse.client is not None and reuse.client.device_id == device
    await reuse.disconnect()
    # a refused token with a password falls back to a password login on the same device
    relog, _ = make_connector(
        synapse, me, secrets={"access_token": "nope", "password": me.password, "device_id": device}
    )
    await relog.connect()
    assert relog.client is not None and relog.client.device_id == device
    assert await relog.ctx.secrets.get("access_token") != "nope"
    await relog.disconnect()


async def test_homeserver_restart_mid_conversation(synapse: SynapseServer, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    connector, sink = make_connector(synapse, me)
    running = await start(connector, sink)
    first = str(await other.client.send_text(RoomID(room), "before restart"))
    await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == first)
    synapse.stop()
    assert running.task is not None
    with pytest.raises(TransientError):
        await asyncio.wait_for(running.task, 15)
    cursor = await connector.ctx.state.get("next_batch")  # stored after the batch with "first"
    await connector.disconnect()
    synapse.start()  # from the main thread: setpriv --pdeathsig fires when the spawning thread ends
    meanwhile = [str(await other.client.send_text(RoomID(room), f"meanwhile {i}")) for i in range(3)]
    await connector.connect()
    snapshot = await connector.sync_state(cursor)
    assert history_ids(snapshot.history) == meanwhile
    running = Running(connector, sink, asyncio.create_task(connector.subscribe()))
    try:
        after = str(await other.client.send_text(RoomID(room), "after restart"))
        await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == after)
    finally:
        await running.stop()


async def test_refused_sync_token_starts_a_fresh_sync(synapse: SynapseServer, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    recent = str(await other.client.send_text(RoomID(room), "recent"))
    state = MemoryStateStore()
    await state.set("next_batch", "not-a-token")
    connector, _ = make_connector(synapse, me, state=state)
    await connector.connect()
    try:
        snapshot = await connector.sync_state("also-not-a-token")
        assert recent in history_ids(snapshot.history)
        assert not snapshot.complete  # only the recent end of each room
        assert snapshot.cursor and snapshot.cursor != "not-a-token"
    finally:
        await connector.disconnect()


async def test_sync_state_while_subscribed_leaves_history_to_the_live_stream(
    running: Running, me: Peer, other: Peer
) -> None:
    room = await other.room_with(me, direct=True)
    sent = str(await other.client.send_text(RoomID(room), "live only"))
    await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == sent)
    snapshot = await running.connector.sync_state(None)
    assert snapshot.history == () and any(c.remote_id == room for c in snapshot.conversations)


async def test_a_reaction_seen_before_a_restart_is_removed_after_it(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    """The seen-reactions map (``ctx.state.map``) outlives the session: the redaction of a reaction seen
    before the restart is a reaction removal after it, not a message delete."""
    room = await other.room_with(me, direct=True)
    state = MemoryStateStore()
    connector, sink = make_connector(synapse, me, state=state)
    first = await start(connector, sink)
    mine = await connector.send_message(room, OutboundMessage(txn_id="restart-r", text="react here"))
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": mine.remote_id, "key": "🎉"}}
    reaction_id = await other.client.send_message_event(RoomID(room), EventType.REACTION, content)
    await wait_event(first, lambda e: isinstance(e, Reaction) and e.target_id == mine.remote_id)
    await first.stop()
    assert await state.map("reactions", max_entries=MAX_REMEMBERED_REACTIONS).get(reaction_id)

    again, sink2 = make_connector(synapse, me, state=state)
    running = await start(again, sink2)
    try:
        await other.client.redact(RoomID(room), reaction_id)
        removed = await wait_event(
            running, lambda e: isinstance(e, Reaction) and e.action == ReactionAction.REMOVE
        )
        assert (removed.target_id, removed.emoji, removed.sender.user_id) == (
            mine.remote_id,
            "🎉",
            other.user_id,
        )
    finally:
        await running.stop()
