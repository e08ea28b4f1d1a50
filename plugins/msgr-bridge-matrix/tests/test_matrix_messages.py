"""Messages both ways over a real Synapse: DMs, groups, formatting, echoes, replies, threads, media."""

from __future__ import annotations

import asyncio

from matrix_peer import Peer, Running
from mautrix.types import RoomID

from msgr_bridge.schema import (
    Attachment,
    ConversationKind,
    Message,
    OutboundMessage,
    TextFormat,
)
from msgr_bridge.testing.synapse import SynapseServer


async def test_inbound_dm_with_html_arrives_and_converts(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    event_id = await other.send_html(room, "hello *you*", "hello <em>you</em>")
    msg = await wait_message(running, event_id)
    assert msg.conversation_id == room
    assert msg.text == "hello *you*"
    assert msg.formatted == "hello <em>you</em>" and msg.format == TextFormat.HTML
    assert msg.sender.user_id == other.user_id and not msg.sender.is_self
    snapshot = await running.connector.sync_state(None)
    conv = next(c for c in snapshot.conversations if c.remote_id == room)
    assert conv.type == ConversationKind.DIRECT
    assert set(conv.members) == {me.user_id, other.user_id}
    assert conv.name == "Bob"


async def test_inbound_group_message_and_snapshot(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=False, name="The Group")
    event_id = str(await other.client.send_text(RoomID(room), "plain hello"))
    msg = await wait_message(running, event_id)
    assert (msg.text, msg.formatted, msg.format) == ("plain hello", None, TextFormat.PLAIN)
    assert msg.sender.display_name == "Bob"
    snapshot = await running.connector.sync_state(None)
    conv = next(c for c in snapshot.conversations if c.remote_id == room)
    assert conv.type == ConversationKind.GROUP and conv.name == "The Group"
    contact = next(c for c in snapshot.contacts if c.remote_id == other.user_id)
    assert contact.display_name == "Bob"
    assert any(c.is_self and c.remote_id == me.user_id for c in snapshot.contacts)


async def test_outbound_send_arrives_and_echo_carries_txn(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=True)
    out = OutboundMessage(
        txn_id="txn-out-1", text="hi **bob**", formatted="hi <b>bob</b>", format=TextFormat.HTML
    )
    result = await running.connector.send_message(room, out)
    seen = await other.wait_for(lambda r, e: e.get("event_id") == result.remote_id)
    assert seen["content"]["formatted_body"] == "hi <b>bob</b>"
    assert seen["content"]["format"] == "org.matrix.custom.html"
    echo = await wait_message(running, result.remote_id)
    assert echo.txn_id == "txn-out-1" and echo.sender.is_self


async def test_replies_and_threads_both_ways(running: Running, me: Peer, other: Peer) -> None:
    room = await other.room_with(me, direct=False)
    root = str(await other.client.send_text(RoomID(room), "root"))
    reply = await running.connector.send_message(room, OutboundMessage(txn_id="r1", text="re", reply_to=root))
    seen = await other.wait_for(lambda r, e: e.get("event_id") == reply.remote_id)
    assert seen["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == root
    threaded = await running.connector.send_message(
        room, OutboundMessage(txn_id="t1", text="in thread", thread_id=root)
    )
    seen = await other.wait_for(lambda r, e: e.get("event_id") == threaded.remote_id)
    assert seen["content"]["m.relates_to"]["rel_type"] == "m.thread"
    # and inbound: the other person replies in the thread to our message
    content = {
        "msgtype": "m.text",
        "body": "answer",
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": False,
            "m.in_reply_to": {"event_id": threaded.remote_id},
        },
    }
    event_id = str(await other.client.send_message_event(RoomID(room), "m.room.message", content))
    msg = await wait_message(running, event_id)
    assert msg.thread_id == root and msg.reply_to == threaded.remote_id
    assert (await wait_message(running, reply.remote_id)).reply_to == root


async def test_text_with_attachment_is_split_into_numbered_parts(
    running: Running, me: Peer, other: Peer, synapse: SynapseServer
) -> None:
    room = await other.room_with(me, direct=True)
    mxc = await other.client.upload_media(b"abc", "text/plain", "a.txt")
    att = Attachment(name="a.txt", mime_type="text/plain", url=str(mxc), size=3)
    result = await running.connector.send_message(
        room, OutboundMessage(txn_id="split", text="see file", attachments=(att,))
    )
    assert len(result.extra_parts) == 1
    part = await wait_message(running, result.extra_parts[0])
    assert (part.txn_id, part.part, part.attachments[0].url) == ("split", 1, mxc)
    first = await wait_message(running, result.remote_id)
    assert (first.txn_id, first.part, first.text) == ("split", 0, "see file")


async def wait_message(running: Running, event_id: str) -> Message:
    from matrix_peer import wait_event

    event = await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == event_id)
    assert isinstance(event, Message)
    return event


_ = asyncio
