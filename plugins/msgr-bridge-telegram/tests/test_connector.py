"""The Telegram connector against the fake Telegram: catch-up, state commits, faults, groups and channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from msgr_bridge_telegram import TelegramConnector
from msgr_bridge_telegram.config import SECRET_LINK_STATE
from msgr_bridge_telegram.state import STATE_KEY
from telethon.tl import functions

from msgr_bridge.connectors.protocol import Ack, RawPayload
from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError
from msgr_bridge.schema import Delete, Edit, MembershipChange, Message, OutboundMessage, ReactionAction
from msgr_bridge.testing.fakes import CollectingSink, MemoryStateStore, make_context
from msgr_bridge.testing.harness import Live

WAIT = 10.0


class HeldSink(CollectingSink):
    """Collects payloads but acknowledges them only when told (the core commits later)."""

    def __init__(self) -> None:
        super().__init__()
        self.acks: list[Ack] = []

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        if ack is not None:
            self.acks.append(ack)
        await super().push(payload)

    async def commit(self) -> None:
        acks, self.acks = self.acks, []
        for ack in acks:
            await ack()


async def linked(telegram: Any) -> dict[str, Any]:
    flow = TelegramConnector.link_flow(telegram.settings)
    await flow.start()
    result = await flow.submit(telegram.answers())
    return {"remote_user_id": result.remote_user_id, "settings": {**telegram.settings, **result.settings},
            "secrets": result.secrets}  # fmt: skip


@pytest.fixture
async def account(telegram: Any) -> dict[str, Any]:
    return await linked(telegram)


def build(account: dict[str, Any], *, sink: Any = None, state: Any = None) -> TelegramConnector:
    return TelegramConnector(make_context("telegram", sink=sink or CollectingSink(), state=state, **account))


def texts(connector: TelegramConnector, payloads: Any) -> list[str]:
    account = connector.ctx.account
    return [e.text for p in payloads for e in connector.convert(p, account) if isinstance(e, Message)]


def out(text: str, **kw: Any) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{text}", text=text, **kw)


@pytest.fixture
async def live(account: dict[str, Any]) -> AsyncIterator[Live]:
    runner = await Live(build(account)).start()
    yield runner
    await runner.stop()


async def test_gap_while_disconnected_is_filled_once_by_get_difference(telegram: Any, account: Any) -> None:
    state = MemoryStateStore()
    connector = build(account, state=state)
    live = await Live(connector).start()
    telegram.fake.world.send(telegram.bob, telegram.alice, "seen live")
    await live.wait_text("seen live")
    mine = await connector.send_message(f"user:{telegram.bob.id}", out("sent before the gap"))
    await live.stop()
    missed = [telegram.fake.world.send(telegram.bob, telegram.alice, f"missed {i}") for i in range(3)]
    telegram.fake.world.edit(missed[0], "missed 0 (edited)")
    live = await Live(connector).start()  # no cursor: the committed state in ctx.state is enough
    try:
        assert live.snapshot is not None and live.snapshot.complete
        history = [e for e in live.events(live.snapshot.history)]
        theirs = [e.text for e in history if isinstance(e, Message) and not e.sender.is_self]
        assert theirs == ["missed 0", "missed 1", "missed 2"]
        assert [e.text for e in history if isinstance(e, Edit)] == ["missed 0 (edited)"]
        ours = [e for e in history if isinstance(e, Message) and e.sender.is_self]
        assert ours == [], "our own send was committed when Telegram answered it, not fetched again"
        assert mine.remote_id == str(telegram.alice.posts[int(mine.remote_id)].ids[telegram.alice.id])
        telegram.fake.world.send(telegram.bob, telegram.alice, "after")
        await live.wait_text("after")
        pushed = texts(connector, live.sink.payloads)
        assert pushed.count("seen live") == 1 and pushed.count("after") == 1
        assert not {"missed 0", "missed 1", "missed 2"} & set(pushed), "the catch-up was delivered twice"
    finally:
        await live.stop()
    assert any(r.name == "GetDifferenceRequest" for r in telegram.fake.requests)


async def test_messages_after_linking_are_not_lost_before_the_first_committed_sync(
    telegram: Any, account: Any
) -> None:
    """What is written after the link, while the bridge is still starting or during a first run killed
    before anything was committed (nothing acknowledged, no cursor), arrives in the first committed sync:
    the catch-up starts from the update state read when the account was linked, not from the present.
    (The chaos test lost the first messages this way: the first runs were killed before their first sync
    committed, and the next run started from ``getState``.)"""
    state, world = MemoryStateStore(), telegram.fake.world
    world.send(telegram.bob, telegram.alice, "before the first start")
    settings = {**account["settings"], "history_import": 0}
    first = await Live(build({**account, "settings": settings}, sink=HeldSink(), state=state)).start()
    try:
        world.send(telegram.bob, telegram.alice, "during the first run")
        await first.wait_text("during the first run")  # pushed, never committed: the process is killed
    finally:
        await first.stop()
    world.send(telegram.bob, telegram.alice, "while down")
    again = build({**account, "settings": settings}, state=state)
    live = await Live(again).start()
    try:
        assert live.snapshot is not None
        assert texts(again, live.snapshot.history) == [
            "before the first start",
            "during the first run",
            "while down",
        ]
    finally:
        await live.stop()


async def test_a_busy_telegram_at_link_time_does_not_fail_the_link(telegram: Any) -> None:
    """Reading the link state is best effort: a FLOOD_WAIT then links the account without it (its first
    sync starts from the present)."""
    telegram.fake.flood_wait(functions.messages.GetDialogsRequest, 5)
    account = await linked(telegram)
    assert SECRET_LINK_STATE not in account["secrets"] and account["secrets"]["session"]


async def test_update_before_the_first_sync_is_delivered(telegram: Any, account: Any) -> None:
    """An account linked before the link state was kept starts its first sync from the present (getState)
    with no history, so what arrived between connect() and that sync must still be pushed when
    subscribe() starts."""
    secrets = {k: v for k, v in account["secrets"].items() if k != SECRET_LINK_STATE}
    connector = build(
        {**account, "secrets": secrets, "settings": {**account["settings"], "history_import": 0}}
    )
    await connector.connect()
    telegram.fake.world.send(telegram.bob, telegram.alice, "early")
    await telegram.until(lambda: telegram.fake.calls("GetStateRequest") and connector.inbox.buffer)
    live = Live(connector)
    live.snapshot = await connector.sync_state(None)
    assert live.snapshot.history == ()
    live.task = asyncio.create_task(connector.subscribe())
    try:
        await live.wait_text("early")
    finally:
        await live.stop()


async def test_history_is_imported_once_when_the_account_is_linked(telegram: Any) -> None:
    world, alice, bob = telegram.fake.world, telegram.alice, telegram.bob
    alice.contacts.add(bob.id)
    group = world.create_group("Old group", [alice, bob])
    for i in range(5):
        world.send(bob, alice, f"old {i}")
    world.send(bob, group, "old in the group")
    account = await linked(telegram)
    account["settings"]["history_import"] = 3
    connector = build(account)
    await connector.connect()
    try:
        first = await connector.sync_state(None)
        assert texts(connector, first.history) == ["old 2", "old 3", "old 4", "old in the group"]
        assert {c.remote_id for c in first.conversations} == {f"user:{bob.id}", f"chat:{group.id}"}
        assert [c.display_name for c in first.contacts] == ["Bob"]
        again = await connector.sync_state(first.cursor)  # committed: never imported twice
        assert texts(connector, again.history) == []
    finally:
        await connector.disconnect()


async def test_history_import_reports_its_progress(telegram: Any) -> None:
    world, alice, bob = telegram.fake.world, telegram.alice, telegram.bob
    group = world.create_group("Old group", [alice, bob])
    for i in range(5):
        world.send(bob, alice, f"old {i}")
    world.send(bob, group, "old in the group")
    account = await linked(telegram)
    account["settings"]["history_import"] = 3
    connector = build(account)
    await connector.connect()
    try:
        await connector.sync_state(None)
        progress = connector.ctx.progress
        assert [(r.phase.value, r.done, r.finished) for r in progress.of(f"user:{bob.id}")] == [
            ("history", 3, False),
            ("history", 3, True),
        ]
        assert progress.of(f"chat:{group.id}")[-1].finished
        assert progress.finished() == {f"user:{bob.id}", f"chat:{group.id}"}
    finally:
        await connector.disconnect()


async def test_stored_state_waits_for_the_commit(telegram: Any, account: Any) -> None:
    state, sink = MemoryStateStore(), HeldSink()
    live = await Live(build(account, sink=sink, state=state)).start()
    try:
        start = state.values[STATE_KEY]["pts"] if STATE_KEY in state.values else 0
        telegram.fake.world.send(telegram.bob, telegram.alice, "one")
        await live.wait_text("one")
        assert state.values.get(STATE_KEY, {}).get("pts", 0) == start, "stored before the payload committed"
        await sink.commit()
        assert state.values[STATE_KEY]["pts"] == telegram.alice.box.pts
    finally:
        await live.stop()


async def test_gap_while_connected_is_filled_by_telethon(telegram: Any, live: Live) -> None:
    world, alice, bob = telegram.fake.world, telegram.alice, telegram.bob
    telegram.fake.muted.add(alice.id)  # two updates are lost on the wire
    world.send(bob, alice, "lost 1")
    world.send(bob, alice, "lost 2")
    telegram.fake.muted.discard(alice.id)
    world.send(bob, alice, "arrives")  # its pts shows the gap: the client asks getDifference
    await live.wait_text("arrives")
    await live.wait_text("lost 2")
    pushed = texts(live.connector, live.sink.payloads)
    assert [t for t in pushed if t.startswith(("lost", "arrives"))] == ["lost 1", "lost 2", "arrives"]


async def test_flood_wait_becomes_rate_limited_and_the_retry_goes_out(telegram: Any, live: Live) -> None:
    conversation = f"user:{telegram.bob.id}"
    telegram.fake.flood_wait(functions.messages.SendMessageRequest, 1)
    with pytest.raises(RateLimited) as raised:
        await live.connector.send_message(conversation, out("hold on"))
    assert raised.value.retry_after == 1
    assert not [p for p in telegram.bob.posts.values() if p.text == "hold on"]
    await asyncio.sleep(raised.value.retry_after)  # what the outbox does: the entry waits, then goes out
    sent = await live.connector.send_message(conversation, out("hold on"))
    delivered = [p for p in telegram.bob.posts.values() if p.text == "hold on"]
    assert len(delivered) == 1 and sent.remote_id == str(delivered[0].ids[telegram.alice.id])


async def test_our_own_requests_do_not_look_like_a_deaf_connection(telegram: Any, live: Live) -> None:
    """Telethon applies the answers to our own sends without handing them to the update handlers; their
    pts must still count as seen, or the liveness check takes the server's newer pts for updates this
    connection never delivered and reconnects after every send."""
    c, conversation = live.connector, f"user:{telegram.bob.id}"
    telegram.fake.world.send(telegram.bob, telegram.alice, "to read")
    theirs = await live.wait_text("to read")
    sent = await c.send_message(conversation, out("mine"))
    await c.edit(conversation, sent.remote_id, out("mine, edited"))
    await c.mark_read(conversation, theirs.remote_id)
    await c.delete(conversation, sent.remote_id)
    checks = len(telegram.fake.calls("GetStateRequest"))
    task = live.task
    assert task is not None
    await telegram.until(lambda: len(telegram.fake.calls("GetStateRequest")) >= checks + 3 or task.done())
    assert not task.done(), task  # a deaf-connection TransientError ends subscribe()
    assert isinstance(c, TelegramConnector) and c.ledger.committed.pts == telegram.alice.box.pts


async def test_a_retried_send_whose_answer_was_lost_is_not_sent_twice(telegram: Any, account: Any) -> None:
    connector, conversation = build(account), f"user:{telegram.bob.id}"
    await connector.connect()
    try:
        telegram.fake.drop_answer(functions.messages.SendMessageRequest)  # sent, but the answer is lost
        with pytest.raises(TransientError):
            await connector.send_message(conversation, out("only once"))
        await connector.disconnect()  # what the supervisor does, then the outbox retries the same txn
        await connector.connect()
        sent = await connector.send_message(conversation, out("only once"))
    finally:
        await connector.disconnect()
    copies = [p for p in telegram.bob.posts.values() if p.text == "only once"]
    assert len(copies) == 1 and sent.remote_id == str(copies[0].ids[telegram.alice.id])


async def test_a_quiet_connection_after_a_catch_up_is_not_deaf(telegram: Any, account: Any) -> None:
    """After downtime the catch-up returns the gap as history; with no live traffic afterwards the stored
    state still lags the server's until the core hands back the cursor. That is not deafness."""
    state = MemoryStateStore()
    connector = build(account, state=state)
    live = await Live(connector).start()
    telegram.fake.world.send(telegram.bob, telegram.alice, "before")
    await live.wait_text("before")
    await live.stop()
    telegram.fake.world.send(telegram.bob, telegram.alice, "while away")
    live = await Live(connector).start()
    try:
        assert live.snapshot is not None and texts(connector, live.snapshot.history) == ["while away"]
        task = live.task
        assert task is not None
        checks = len(telegram.fake.calls("GetStateRequest"))
        await telegram.until(lambda: len(telegram.fake.calls("GetStateRequest")) >= checks + 3 or task.done())
        assert not task.done(), task
    finally:
        await live.stop()


async def test_revoked_session_fails_authentication(telegram: Any, live: Live) -> None:
    telegram.fake.revoke(telegram.alice)
    assert live.task is not None
    with pytest.raises(TransientError):  # the connection drops first ...
        await asyncio.wait_for(live.task, WAIT)
    live.task = None
    with pytest.raises(AuthenticationFailed):  # ... and the session is refused on reconnect
        await live.connector.connect()


async def test_revoked_session_found_by_the_liveness_check(telegram: Any, live: Live) -> None:
    for key_id, uid in list(telegram.fake.authorizations.items()):  # revoked without a dropped link
        if uid == telegram.alice.id:
            del telegram.fake.authorizations[key_id]
            telegram.fake.revoked[key_id] = "SESSION_REVOKED"
    assert live.task is not None
    with pytest.raises(AuthenticationFailed, match="SessionRevoked"):
        await asyncio.wait_for(live.task, WAIT)
    live.task = None


async def test_catch_up_in_a_channel_reports_its_progress(telegram: Any, account: Any) -> None:
    world, alice, bob = telegram.fake.world, telegram.alice, telegram.bob
    channel = world.create_channel("Super", [alice], owner=bob)
    world.send(bob, channel, "before")
    connector = build(account)
    await connector.connect()
    try:
        first = await connector.sync_state(None)  # the core stores this cursor once committed
    finally:
        await connector.disconnect()
    for i in range(3):
        world.send(bob, channel, f"missed {i}")
    await connector.connect()
    try:
        again = await connector.sync_state(first.cursor)
    finally:
        await connector.disconnect()
    assert texts(connector, again.history) == ["missed 0", "missed 1", "missed 2"]
    reports = connector.ctx.progress.of(f"channel:{channel.id}")
    assert [(r.phase.value, r.done, r.finished) for r in reports][-1] == ("catchup", 3, True)


async def test_groups_channels_and_forum_topics(telegram: Any, live: Live) -> None:
    world, alice, bob = telegram.fake.world, telegram.alice, telegram.bob
    group = world.create_group("Basic", [alice, bob])
    channel = world.create_channel("Super", [alice], owner=bob)
    forum = world.create_channel("Forum", [alice], owner=bob, forum=True)
    topic = world.create_topic(bob, forum, "Topic")
    world.send(bob, group, "in the group")
    first = world.send(bob, channel, "in the supergroup")
    world.send(bob, forum, "in the topic", topic=topic)
    in_group = await live.wait_text("in the group")
    in_channel = await live.wait_text("in the supergroup")
    in_topic = await live.wait_text("in the topic")
    assert (
        in_group.conversation_id == f"chat:{group.id}"
        and in_channel.conversation_id == f"channel:{channel.id}"
    )
    assert in_topic.thread_id == str(topic) and in_topic.reply_to is None
    c = live.connector
    sent = await c.send_message(f"channel:{forum.id}", out("answer in topic", thread_id=str(topic)))
    assert forum.posts[int(sent.remote_id)].topic == topic
    reply = await c.send_message(f"channel:{channel.id}", out("a reply", reply_to=in_channel.remote_id))
    assert channel.posts[int(reply.remote_id)].reply_to is first
    await c.delete(f"channel:{channel.id}", reply.remote_id)
    assert int(reply.remote_id) not in channel.posts
    await c.mark_read(f"channel:{channel.id}", in_channel.remote_id)
    await c.react(f"chat:{group.id}", in_group.remote_id, "🔥", ReactionAction.ADD)
    world.add_member(bob, group, world.add_user("Carol", "15550003"))
    joined = await live.wait_event(lambda e: isinstance(e, MembershipChange))
    assert isinstance(joined, MembershipChange) and joined.action == "invite" and joined.actor is not None
    world.delete(bob.id, [first])
    gone = await live.wait_event(lambda e: isinstance(e, Delete) and e.target_id == in_channel.remote_id)
    assert gone.conversation_id == f"channel:{channel.id}"
    with pytest.raises(PermanentError):
        await c.send_message("channel:999999", out("nowhere"))


async def test_formatting_both_ways(telegram: Any, live: Live) -> None:
    c, conversation = live.connector, f"user:{telegram.bob.id}"
    html = OutboundMessage(txn_id="txn-f", text="bold and link", formatted='<b>bold</b> and <a href="https://e.org">link</a>',
                           format="html")  # fmt: skip
    await c.send_message(conversation, html)
    post = next(p for p in telegram.bob.posts.values() if p.text == "bold and link")
    assert [type(e).__name__ for e in post.entities] == ["MessageEntityBold", "MessageEntityTextUrl"]
    bold = type(post.entities[0])(0, 2)
    telegram.fake.world.send(telegram.bob, telegram.alice, "hi there", entities=[bold])
    got = await live.wait_text("hi there")
    assert got.formatted == "<strong>hi</strong> there"
