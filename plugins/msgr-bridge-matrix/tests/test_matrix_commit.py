"""The sync token is stored only after the events it covers are committed (issue #10 item 2).

A connector stopped between push and commit (the pipeline never called the acks) must leave the older token
stored, so the next start fetches those events again instead of skipping them.
"""

from __future__ import annotations

from matrix_peer import Peer, Running, make_connector, start, wait_event
from mautrix.types import RoomID
from msgr_bridge_matrix import MatrixConnector

from msgr_bridge.schema import Message
from msgr_bridge.testing.fakes import HoldingSink, MemoryStateStore, make_context
from msgr_bridge.testing.synapse import SynapseServer
from msgr_bridge.testing.waiting import wait_until


def holding_connector(synapse: SynapseServer, me: Peer, state: MemoryStateStore) -> Running:
    sink = HoldingSink()
    ctx = make_context(
        "matrix",
        remote_user_id=me.user_id,
        sink=sink,
        state=state,
        settings={"homeserver": synapse.base_url, "user_id": me.user_id},
        secrets={"password": me.password},
    )
    return Running(MatrixConnector(ctx), sink)


async def test_events_pushed_but_not_committed_come_back_after_a_restart(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    room = await other.room_with(me, direct=True)
    state = MemoryStateStore()
    held = holding_connector(synapse, me, state)
    first = await start(held.connector, held.sink)
    assert isinstance(first.sink, HoldingSink)
    before = str(await other.client.send_text(RoomID(room), "committed"))
    await wait_event(first, lambda e: isinstance(e, Message) and e.remote_id == before)
    await first.sink.release()  # "committed" is stored, and so is the token after it
    committed_token = await state.get("next_batch")
    assert committed_token is not None
    pending = [str(await other.client.send_text(RoomID(room), f"in flight {i}")) for i in range(3)]
    for event_id in pending:
        await wait_event(first, lambda e, i=event_id: isinstance(e, Message) and e.remote_id == i)
    await first.stop()  # the "crash": these pushes were never committed (their acks never ran)
    assert await state.get("next_batch") == committed_token

    again, _ = make_connector(synapse, me, state=state)
    await again.connect()
    try:
        snapshot = await again.sync_state(None)
    finally:
        await again.disconnect()
    ids = [p["event"]["event_id"] for p in snapshot.history if p["event"].get("type") == "m.room.message"]
    assert ids == pending  # each uncommitted event once, and the committed one not again


async def test_token_is_stored_once_the_acks_arrive(synapse: SynapseServer, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    state = MemoryStateStore()
    held = holding_connector(synapse, me, state)
    running = await start(held.connector, held.sink)
    assert isinstance(running.sink, HoldingSink)
    try:
        await wait_until(lambda: "next_batch" in state.values)  # subscribe() stored sync_state's token
        start_token = await state.get("next_batch")
        sent = str(await other.client.send_text(RoomID(room), "one"))
        await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == sent)
        assert await state.get("next_batch") == start_token  # pushed, not committed: not stored
        await running.sink.release()
        assert await state.get("next_batch") != start_token
    finally:
        await running.stop()
