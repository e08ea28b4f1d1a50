"""Each declared capability over the wire, both ways; undeclared ones raise NotSupported; rate limits."""

from __future__ import annotations

import pytest
from matrix_peer import Peer, Running, make_connector, wait_event
from mautrix.types import RoomID, UserID
from msgr_bridge_matrix import MatrixConnector

from msgr_bridge.connectors.base import CAPABILITY_METHODS
from msgr_bridge.errors import RateLimited
from msgr_bridge.schema import (
    Delete,
    Edit,
    MembershipAction,
    MembershipChange,
    Message,
    OutboundMessage,
    Reaction,
    ReactionAction,
    ReadReceipt,
    TextFormat,
    Typing,
)
from msgr_bridge.testing.synapse import SynapseServer


def test_every_capability_method_is_declared() -> None:
    caps = MatrixConnector.capabilities
    assert all(caps.supports(flag) for flag in CAPABILITY_METHODS)  # so no NotSupported path to test
    assert caps.e2ee is False


async def test_edits_both_ways(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    sent = await running.connector.send_message(room, OutboundMessage(txn_id="e0", text="typo"))
    edit = await running.connector.edit(
        room,
        sent.remote_id,
        OutboundMessage(txn_id="e1", text="fixed", formatted="<b>fixed</b>", format=TextFormat.HTML),
    )
    seen = await other.wait_for(lambda r, e: e.get("event_id") == edit.remote_id)
    assert seen["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": sent.remote_id}
    assert seen["content"]["m.new_content"]["formatted_body"] == "<b>fixed</b>"
    target = str(await other.client.send_text(RoomID(room), "hellp"))
    content = {
        "msgtype": "m.text",
        "body": "* hello",
        "m.new_content": {"msgtype": "m.text", "body": "hello"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }
    await other.client.send_message_event(RoomID(room), "m.room.message", content)
    inbound = await wait_event(running, lambda e: isinstance(e, Edit) and e.target_id == target)
    assert inbound.text == "hello" and inbound.sender.user_id == other.user_id


async def test_deletes_both_ways(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    sent = await running.connector.send_message(room, OutboundMessage(txn_id="d0", text="oops"))
    await running.connector.delete(room, sent.remote_id)
    seen = await other.wait_for(lambda r, e: e.get("type") == "m.room.redaction")
    assert sent.remote_id in (seen.get("redacts"), seen["content"].get("redacts"))
    target = str(await other.client.send_text(RoomID(room), "regret"))
    await other.client.redact(RoomID(room), target)
    inbound = await wait_event(running, lambda e: isinstance(e, Delete) and e.target_id == target)
    assert inbound.sender is not None and inbound.sender.user_id == other.user_id


async def test_reactions_both_ways_including_removal(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    target = str(await other.client.send_text(RoomID(room), "react to me"))
    await running.connector.react(room, target, "👍", ReactionAction.ADD)
    seen = await other.wait_for(lambda r, e: e.get("type") == "m.reaction")
    assert seen["content"]["m.relates_to"] == {"rel_type": "m.annotation", "event_id": target, "key": "👍"}
    await running.connector.react(room, target, "👍", ReactionAction.REMOVE)
    gone = await other.wait_for(lambda r, e: e.get("type") == "m.room.redaction")
    assert seen["event_id"] in (gone.get("redacts"), gone["content"].get("redacts"))
    echo = await wait_event(running, lambda e: isinstance(e, Reaction) and e.action == ReactionAction.REMOVE)
    assert (echo.target_id, echo.emoji, echo.sender.is_self) == (target, "👍", True)
    # the other person reacts and takes it back: add, then remove (a redaction of the reaction event)
    mine = await running.connector.send_message(room, OutboundMessage(txn_id="r0", text="like this"))
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": mine.remote_id, "key": "🎉"}}
    reaction_id = await other.client.send_message_event(RoomID(room), "m.reaction", content)
    added = await wait_event(running, lambda e: isinstance(e, Reaction) and e.target_id == mine.remote_id)
    assert (added.emoji, added.action, added.sender.user_id) == ("🎉", ReactionAction.ADD, other.user_id)
    await other.client.redact(RoomID(room), reaction_id)
    removed = await wait_event(
        running, lambda e: isinstance(e, Reaction) and e.action == ReactionAction.REMOVE and e.emoji == "🎉"
    )
    assert removed.target_id == mine.remote_id and removed.sender.user_id == other.user_id


async def test_read_receipts_both_ways(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    target = str(await other.client.send_text(RoomID(room), "read me"))
    await running.connector.mark_read(room, target)
    receipt = await other.wait_for(lambda r, e: e.get("type") == "m.receipt" and target in e["content"])
    assert me.user_id in receipt["content"][target]["m.read"]
    mine = await running.connector.send_message(room, OutboundMessage(txn_id="rr", text="did you read?"))
    await other.client.send_receipt(RoomID(room), mine.remote_id)
    inbound = await wait_event(
        running, lambda e: isinstance(e, ReadReceipt) and e.reader.user_id == other.user_id
    )
    assert inbound.up_to_id == mine.remote_id and inbound.conversation_id == room


async def test_typing_both_ways(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    await running.connector.set_typing(room, True)
    await other.wait_for(lambda r, e: e.get("type") == "m.typing" and me.user_id in e["content"]["user_ids"])
    await running.connector.set_typing(room, False)
    await other.wait_for(
        lambda r, e: e.get("type") == "m.typing" and me.user_id not in e["content"]["user_ids"]
    )
    await other.client.set_typing(RoomID(room), 10_000)
    started = await wait_event(running, lambda e: isinstance(e, Typing) and e.user.user_id == other.user_id)
    assert started.active and started.conversation_id == room
    await other.client.set_typing(RoomID(room), 0)
    await wait_event(
        running, lambda e: isinstance(e, Typing) and e.user.user_id == other.user_id and not e.active
    )


async def test_membership_changes(running: Running, me: Peer, other: Peer, synapse: SynapseServer) -> None:
    room = await other.room_with(me, direct=False, name="members")
    carol = await Peer.create(synapse, "carol", "Carol")
    try:
        await other.client.invite_user(RoomID(room), UserID(carol.user_id))
        invite = await membership(running, carol.user_id, MembershipAction.INVITE)
        assert invite.actor is not None and invite.actor.user_id == other.user_id
        await carol.client.join_room_by_id(RoomID(room))
        joined = await membership(running, carol.user_id, MembershipAction.JOIN)
        assert joined.user.display_name == "Carol"
        await carol.client.set_displayname("Caroline")
        renamed = await membership(running, carol.user_id, MembershipAction.RENAME)
        assert renamed.new_name == "Caroline"
        await other.client.kick_user(RoomID(room), UserID(carol.user_id), reason="bye")
        kicked = await membership(running, carol.user_id, MembershipAction.KICK)
        assert kicked.reason == "bye"
        await other.client.leave_room(RoomID(room))
        await membership(running, other.user_id, MembershipAction.LEAVE)
    finally:
        await carol.close()


async def test_encrypted_events_are_skipped_not_quarantined(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    fake = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AAAA",
        "session_id": "s",
        "device_id": "D",
        "sender_key": "k",
    }
    encrypted = str(await other.client.send_message_event(RoomID(room), "m.room.encrypted", fake))
    after = str(await other.client.send_text(RoomID(room), "after the encrypted one"))
    await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == after)
    assert not any(p["event"].get("event_id") == encrypted for p in running.sink.payloads)


async def test_rate_limit_raises_rate_limited(synapse: SynapseServer, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    synapse.override_ratelimit(me.user_id, per_second=1, burst_count=1)
    connector, _ = make_connector(synapse, me)
    await connector.connect()
    try:
        with pytest.raises(RateLimited) as info:
            for i in range(20):
                await connector.send_message(room, OutboundMessage(txn_id=f"rl{i}", text=f"spam {i}"))
        assert info.value.retry_after > 0
    finally:
        await connector.disconnect()


async def membership(running: Running, user_id: str, action: MembershipAction) -> MembershipChange:
    event = await wait_event(
        running,
        lambda e: isinstance(e, MembershipChange) and e.user.user_id == user_id and e.action == action,
    )
    assert isinstance(event, MembershipChange)
    return event
