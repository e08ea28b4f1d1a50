"""Room occupants as membership, against a real Prosody with independent slixmpp clients as occupants."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from slixmpp import JID
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import MembershipChange, Message
from msgr_bridge.schema import MembershipAction
from msgr_bridge.testing.prosody import ProsodyServer, start_prosody


@pytest.fixture
def own_server() -> Iterator[ProsodyServer]:
    """A server of its own, with fixed account names."""
    server = start_prosody()
    yield server
    server.cleanup()


def memberships(me: Running) -> list[MembershipChange]:
    return me.events(lambda e: isinstance(e, MembershipChange))


def room_members(me: Running, room: str) -> tuple[str, ...]:
    (conv,) = [c for c in me.snapshots[-1].conversations if c.remote_id == room]
    return conv.members


async def carol_peer(prosody: ProsodyServer) -> Peer:
    user = f"carol-{uuid.uuid4().hex[:8]}"
    prosody.register(user, "carol-pw")
    return await Peer(prosody, user, "carol-pw").start()


async def settle(me: Running, bob: Peer, room: str, marker: str) -> None:
    """Wait until everything the room sent before ``marker`` has reached the sink (stream order)."""
    bob.send(room, marker, mtype="groupchat")
    await me.wait_event(lambda e: isinstance(e, Message) and e.text == marker)


async def test_occupants_join_rename_leave_reach_the_core(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    room = await bob.create_room(f"members-{uuid.uuid4().hex[:8]}")
    me = await Running(*make_connector(prosody, *users["me"], rooms=[room])).start()
    carol = await carol_peer(prosody)
    try:
        my_nick = JID(me.connector.own_jid).user
        assert room_members(me, room) == (f"{room}/bob", f"{room}/{my_nick}")
        await settle(me, bob, room, "before carol")
        assert memberships(me) == []  # the join flood (bob, ourselves) is the snapshot, not events

        muc = carol.client.plugin["xep_0045"]
        await muc.join_muc_wait(JID(room), "carol", maxstanzas=0, timeout=10)
        joined = await me.wait_event(lambda e: isinstance(e, MembershipChange))
        assert (joined.action, joined.conversation_id) == (MembershipAction.JOIN, room)
        assert joined.user.user_id == f"{room}/carol" and not joined.user.is_self

        carol.client.send_presence(pto=f"{room}/carol", pshow="away")  # a status update is no change
        await muc.join_muc_wait(JID(room), "carol2", maxstanzas=0, timeout=10)  # a nick change (303)
        renamed = await me.wait_event(
            lambda e: isinstance(e, MembershipChange) and e.action == MembershipAction.RENAME
        )
        assert (renamed.user.user_id, renamed.new_name) == (f"{room}/carol", "carol2")

        muc.leave_muc(JID(room), "carol2")
        left = await me.wait_event(
            lambda e: isinstance(e, MembershipChange) and e.action == MembershipAction.LEAVE
        )
        assert left.user.user_id == f"{room}/carol2"
        await settle(me, bob, room, "after carol")
        assert [(e.action, e.user.user_id) for e in memberships(me)] == [
            (MembershipAction.JOIN, f"{room}/carol"),
            (MembershipAction.RENAME, f"{room}/carol"),
            (MembershipAction.LEAVE, f"{room}/carol2"),
        ]
    finally:
        await carol.stop()
        await me.stop()


async def test_kick_is_reported_with_actor_and_reason(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    room = await bob.create_room(f"kick-{uuid.uuid4().hex[:8]}")
    me = await Running(*make_connector(prosody, *users["me"], rooms=[room])).start()
    carol = await carol_peer(prosody)
    try:
        await carol.client.plugin["xep_0045"].join_muc_wait(JID(room), "carol", maxstanzas=0, timeout=10)
        await me.wait_event(lambda e: isinstance(e, MembershipChange))
        await bob.client.plugin["xep_0045"].set_role(JID(room), "carol", "none", reason="spam")
        kicked = await me.wait_event(
            lambda e: isinstance(e, MembershipChange) and e.action == MembershipAction.KICK
        )
        assert kicked.user.user_id == f"{room}/carol" and kicked.reason == "spam"
    finally:
        await carol.stop()
        await me.stop()


async def test_reconnect_reports_the_present_as_members_not_as_joins(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    room = await bob.create_room(f"again-{uuid.uuid4().hex[:8]}")
    me = await Running(*make_connector(prosody, *users["me"], rooms=[room])).start()
    carol = await carol_peer(prosody)
    try:
        await settle(me, bob, room, "first session")
        await me.stop()
        # carol comes while we are away: the next snapshot has her, as the net effect of the gap
        await carol.client.plugin["xep_0045"].join_muc_wait(JID(room), "carol", maxstanzas=0, timeout=10)

        await me.start()  # a fresh session (the clean disconnect ended the stream): we join again
        assert me.connector.last_login == "started"
        my_nick = JID(me.connector.own_jid).user
        assert room_members(me, room) == (f"{room}/bob", f"{room}/carol", f"{room}/{my_nick}")
        await settle(me, bob, room, "second session")
        assert memberships(me) == []  # nobody already present is reported as joining again
    finally:
        await carol.stop()
        await me.stop()


async def test_changes_held_during_a_resumed_stream_arrive_live(own_server: ProsodyServer) -> None:
    me_jid = own_server.register("me", "mepw")
    own_server.register("bob", "bobpw")
    own_server.register("carol", "carolpw")
    bob = await Peer(own_server, "bob", "bobpw").start()
    carol = await Peer(own_server, "carol", "carolpw").start()
    room = await bob.create_room("resume")
    me = await Running(*make_connector(own_server, me_jid, "mepw", rooms=[room])).start()
    client = me.connector._client
    assert client is not None and client.transport is not None and me.task is not None
    client.transport.abort()  # the server keeps the session (XEP-0198) and holds what comes meanwhile
    await asyncio.wait_for(asyncio.gather(me.task, return_exceptions=True), 10)
    await me.connector.disconnect()
    await carol.client.plugin["xep_0045"].join_muc_wait(JID(room), "carol", maxstanzas=0, timeout=10)
    await me.start()
    assert me.connector.last_login == "resumed"
    joined = await me.wait_event(lambda e: isinstance(e, MembershipChange))
    assert (joined.action, joined.user.user_id) == (MembershipAction.JOIN, f"{room}/carol")
    await me.stop()
    await carol.stop()
    await bob.stop()
