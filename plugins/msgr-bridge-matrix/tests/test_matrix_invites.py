"""Room invites over a real Synapse: joined automatically (live and while offline) from the inviters the
owner lists in ``auto_join_from``, reported and left alone from anyone else (the default) or when
``auto_join_invites`` is off; an unjoinable invite is logged, given up, and does not stop the sync loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from matrix_peer import Peer, Running, make_connector, start, wait_event
from mautrix.types import RoomCreatePreset, RoomID, UserID
from msgr_bridge_matrix.sync import MAX_REFUSED
from structlog.testing import capture_logs

from msgr_bridge.schema import ConversationKind, MembershipAction, MembershipChange, Message
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.synapse import SynapseServer


async def invite(other: Peer, me: Peer, *, name: str | None = None, direct: bool = False) -> str:
    """``other`` creates a room and invites ``me``; ``me`` does nothing (the bridge has to)."""
    room = await other.client.create_room(
        name=name,
        preset=RoomCreatePreset.TRUSTED_PRIVATE if direct else RoomCreatePreset.PRIVATE,
        invitees=[UserID(me.user_id)],
        is_direct=direct,
    )
    return str(room)


def from_(other: Peer) -> dict[str, Any]:
    """Settings that let ``other``'s invites be joined."""
    return {"auto_join_from": [other.user_id]}


async def joined_rooms(me: Peer) -> set[str]:
    return {str(r) for r in await me.client.get_joined_rooms()}


async def synced_then_stopped(synapse: SynapseServer, me: Peer, state: MemoryStateStore) -> str | None:
    """One connect and sync, as the supervisor does on start; the returned cursor is what the core keeps."""
    connector, _ = make_connector(synapse, me, state=state, settings={"auto_join_from": ["*"]})
    await connector.connect()
    try:
        return (await connector.sync_state(None)).cursor
    finally:
        await connector.disconnect()


def self_joined(me: Peer, room: str) -> Any:
    return lambda e: (
        isinstance(e, MembershipChange)
        and e.conversation_id == room
        and e.user.user_id == me.user_id
        and e.action == MembershipAction.JOIN
    )


@pytest.fixture
async def running(synapse: SynapseServer, me: Peer, other: Peer) -> AsyncIterator[Running]:
    """The account, joining invites from ``other`` only."""
    connector, sink = make_connector(synapse, me, settings=from_(other))
    run = await start(connector, sink)
    yield run
    await run.stop()


async def test_live_invite_is_joined_and_the_conversation_flows(
    running: Running, me: Peer, other: Peer
) -> None:
    room = await invite(other, me, name="Invited Here")
    before = str(await other.client.send_text(RoomID(room), "sent before the join"))
    await wait_event(running, self_joined(me, room))
    assert room in await joined_rooms(me)
    msg = await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == before)
    assert msg.conversation_id == room and msg.sender.user_id == other.user_id
    after = str(await other.client.send_text(RoomID(room), "sent after the join"))
    await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == after)
    snapshot = await running.connector.sync_state(None)
    conv = next(c for c in snapshot.conversations if c.remote_id == room)
    assert conv.name == "Invited Here" and conv.type == ConversationKind.GROUP
    assert set(conv.members) == {me.user_id, other.user_id}


async def test_invite_sent_while_stopped_is_joined_on_next_start(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    state = MemoryStateStore()
    cursor = await synced_then_stopped(synapse, me, state)
    room = await invite(other, me, direct=True)
    missed = str(await other.client.send_text(RoomID(room), "while you were away"))

    connector, sink = make_connector(synapse, me, state=state, settings=from_(other))
    await connector.connect()
    snapshot = await connector.sync_state(cursor)
    assert room in await joined_rooms(me)
    conv = next(c for c in snapshot.conversations if c.remote_id == room)  # listed in the same snapshot
    assert conv.type == ConversationKind.DIRECT and conv.name == "Bob"  # is_direct: added to our m.direct
    running = Running(connector, sink, asyncio.create_task(connector.subscribe()))
    try:
        msg = await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == missed)
        assert msg.conversation_id == room
    finally:
        await running.stop()


async def test_with_auto_join_off_the_invite_is_reported_not_joined(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    known = await other.room_with(me, direct=False)
    connector, sink = make_connector(synapse, me, settings={"auto_join_invites": False, **from_(other)})
    running = await start(connector, sink)
    try:
        room = await invite(other, me)
        invited = await wait_event(
            running, lambda e: isinstance(e, MembershipChange) and e.conversation_id == room
        )
        assert invited.action == MembershipAction.INVITE and invited.user.user_id == me.user_id
        # a later message in another room proves the sync answer with the invite was handled completely
        later = str(await other.client.send_text(RoomID(known), "later"))
        await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == later)
        assert room not in await joined_rooms(me)
        assert await connector.invites.pending.size() == 0 and await connector.invites.refused.size() == 0
    finally:
        await running.stop()


async def test_unjoinable_invite_is_logged_given_up_and_the_connector_carries_on(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    state = MemoryStateStore()
    cursor = await synced_then_stopped(synapse, me, state)
    dead = await invite(other, me, name="Abandoned")
    await other.client.leave_room(RoomID(dead))  # the invite stands, but nobody is left to let us in

    with capture_logs() as logs:
        connector, sink = make_connector(synapse, me, state=state, settings=from_(other))
        await connector.connect()
        snapshot = await connector.sync_state(cursor)  # does not raise
        running = Running(connector, sink, asyncio.create_task(connector.subscribe()))
        try:
            assert dead not in {c.remote_id for c in snapshot.conversations}
            (failed,) = [e for e in logs if e["event"] == "matrix.invite_join_failed"]
            assert failed["room_id"] == dead and failed["log_level"] == "warning"
            assert "refused" in failed["reason"]
            # the live loop still works: a new invite is joined and its message arrives
            room = await invite(other, me)
            sent = str(await other.client.send_text(RoomID(room), "still bridging"))
            await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == sent)
        finally:
            await running.stop()
    refused = await state.map("invites_refused", max_entries=MAX_REFUSED).list()
    assert dead in refused

    # a fresh full sync (no token) lists the dead invite again: it is not tried a second time
    fresh = MemoryStateStore()
    for room_id, reason in refused.items():
        await fresh.map("invites_refused", max_entries=MAX_REFUSED).set(room_id, reason)
    with capture_logs() as logs:
        again, _ = make_connector(synapse, me, state=fresh, settings=from_(other))
        await again.connect()
        try:
            await again.sync_state(None)
        finally:
            await again.disconnect()
    assert not [e for e in logs if e.get("room_id") == dead and e["event"].startswith("matrix.invite_")]
    assert dead not in await joined_rooms(me)


async def test_invites_from_unlisted_inviters_are_reported_not_joined(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    stranger = await Peer.create(synapse, "stranger")
    known = await other.room_with(me, direct=False)
    try:
        for settings in ({}, from_(other)):  # the default (nobody), then someone else only
            connector, sink = make_connector(synapse, me, settings=settings)
            running = await start(connector, sink)
            try:
                with capture_logs() as logs:
                    room = await invite(stranger, me)
                    await wait_event(
                        running, lambda e, r=room: isinstance(e, MembershipChange) and e.conversation_id == r
                    )
                    # a later sync answer proves the one with the invite was handled completely
                    later = str(await other.client.send_text(RoomID(known), "later"))
                    await wait_event(running, lambda e, i=later: isinstance(e, Message) and e.remote_id == i)
                    assert room not in await joined_rooms(me)
                    if settings:  # the same loop joins a listed inviter's room
                        trusted = await invite(other, me)
                        await wait_event(running, self_joined(me, trusted))
                assert any(
                    e["event"] == "matrix.invite_not_auto_joined" and e["inviter"] == stranger.user_id
                    for e in logs
                )
            finally:
                await running.stop()
    finally:
        await stranger.close()
