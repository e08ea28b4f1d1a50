"""Channel messages through Graph's delegated delta query: roots and replies (as threads) arrive, a reply
sent into a thread lands under its root, the link commits through acks so a restart resumes from it, and
what Graph offers only for chats is refused clearly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from msgr_bridge_teams import TeamsConnector

from msgr_bridge.errors import NotSupported, PermanentError
from msgr_bridge.schema import Delete, Edit, Message, OutboundMessage, ReactionAction
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.harness import Live


@pytest.fixture
def channel(tenant: Any) -> tuple[str, str, str]:
    team, (chan,) = tenant.fake.add_team("Engineering", [tenant.alice, tenant.bob], ["General"])
    return team, chan, f"{team}/{chan}"


async def test_roots_and_replies_arrive_as_threads(tenant: Any, channel: tuple[str, str, str]) -> None:
    team, chan, conv = channel
    fake = tenant.fake
    before = fake.post_channel_as(tenant.bob, team, chan, "<p>old root</p>")
    assert before is not None
    connector = TeamsConnector(await tenant.context(await tenant.link(channels=[conv])))
    async with Live(connector) as live:
        assert live.snapshot is not None
        imported = [e for p in live.snapshot.history for e in connector.convert(p, connector.ctx.account)]
        assert [e.text for e in imported if isinstance(e, Message)] == ["old root"]
        root = fake.post_channel_as(tenant.bob, team, chan, "<p>root</p>")
        assert root is not None
        got_root = await live.wait_text("root")
        assert got_root.conversation_id == conv and got_root.thread_id is None
        reply = fake.post_channel_as(tenant.bob, team, chan, "<p>a reply</p>", reply_to=root["id"])
        assert reply is not None
        got_reply = await live.wait_text("a reply")
        assert got_reply.thread_id == root["id"] and got_reply.remote_id == f"{root['id']}/{reply['id']}"
        sent = await connector.send_message(
            conv, OutboundMessage(txn_id="t1", text="mine in thread", thread_id=got_root.remote_id)
        )
        assert [r["body"]["content"] for r in root["_replies"]][-1] == "<p>mine in thread</p>"
        assert sent.remote_id.startswith(f"{root['id']}/")
        echo = await live.wait_text("mine in thread")
        assert echo.sender.is_self and echo.txn_id == "t1" and echo.thread_id == root["id"]
        with pytest.raises(NotSupported):
            await connector.mark_read(conv, root["id"])
    caps = connector.conversation_capabilities(conv)
    assert caps.threads and caps.edits and caps.deletes and caps.reactions and not caps.read_receipts
    assert caps.attachments  # files go to the channel's folder (test_files.py)


async def test_edit_delete_and_react_on_channel_roots_and_replies(
    tenant: Any, channel: tuple[str, str, str]
) -> None:
    team, chan, conv = channel
    fake = tenant.fake
    connector = TeamsConnector(await tenant.context(await tenant.link(channels=[conv])))
    async with Live(connector) as live:
        root = await connector.send_message(conv, OutboundMessage(txn_id="r", text="my root"))
        reply = await connector.send_message(
            conv, OutboundMessage(txn_id="p", text="my reply", thread_id=root.remote_id)
        )
        await live.wait_text("my reply")  # seen first: what changes next is an edit
        await connector.edit(conv, reply.remote_id, OutboundMessage(txn_id="e", text="my reply, edited"))
        assert fake.find_channel_message(team, chan, reply.remote_id)["body"]["content"] == (
            "<p>my reply, edited</p>"
        )
        edited = await live.wait_event(lambda e: isinstance(e, Edit))
        assert isinstance(edited, Edit) and edited.target_id == reply.remote_id
        await connector.react(conv, root.remote_id, "👍", ReactionAction.ADD)
        await connector.react(conv, reply.remote_id, "❤️", ReactionAction.ADD)
        assert [
            r["reactionType"] for r in fake.find_channel_message(team, chan, root.remote_id)["reactions"]
        ] == ["👍"]
        await connector.react(conv, reply.remote_id, "❤️", ReactionAction.REMOVE)
        assert fake.find_channel_message(team, chan, reply.remote_id)["reactions"] == []
        await connector.delete(conv, root.remote_id)
        assert fake.find_channel_message(team, chan, root.remote_id)["deletedDateTime"]
        deleted = await live.wait_event(lambda e: isinstance(e, Delete))
        assert isinstance(deleted, Delete) and deleted.target_id == root.remote_id
        with pytest.raises(PermanentError):
            await connector.edit(conv, "1/2/3", OutboundMessage(txn_id="x", text="x"))


async def test_channel_resumes_from_the_committed_link(tenant: Any, channel: tuple[str, str, str]) -> None:
    team, chan, conv = channel
    fake = tenant.fake
    state = MemoryStateStore()
    result = await tenant.link(channels=[conv])
    first = TeamsConnector(await tenant.context(result, state=state))
    async with Live(first) as live:
        fake.post_channel_as(tenant.bob, team, chan, "<p>seen in channel</p>")
        await live.wait_text("seen in channel")
        async with asyncio.timeout(10):
            while "channels" not in state.values:  # noqa: ASYNC110 - the commit follows the ack
                await asyncio.sleep(0.05)
    fake.post_channel_as(tenant.bob, team, chan, "<p>missed in channel</p>")
    second = TeamsConnector(await tenant.context(result, state=state))
    await second.connect()
    try:
        snapshot = await second.sync_state(None)
    finally:
        await second.disconnect()
    texts = [
        e.text
        for p in snapshot.history
        for e in second.convert(p, second.ctx.account)
        if isinstance(e, Message)
    ]
    assert texts == ["missed in channel"], texts
