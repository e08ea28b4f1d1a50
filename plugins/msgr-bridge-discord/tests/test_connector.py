"""The Discord connector against the Discord fake: resume, resync, acknowledged sequence numbers, rate limits,
revoked tokens, connected-but-deaf links, webhooks, replies, threads and files."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from msgr_bridge_discord import DiscordConnector

from msgr_bridge import AuthenticationFailed, PermanentError, RateLimited, TransientError
from msgr_bridge.connectors.protocol import Ack, RawPayload
from msgr_bridge.errors import AttachmentRefused
from msgr_bridge.schema import Attachment, Message, OutboundMessage, TextFormat
from msgr_bridge.sdk.media import Media
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.media import chunks_of
from msgr_bridge.testing.waiting import wait_until

SEND = "/channels/{channel_id}/messages"


def out(text: str, **kw: Any) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{text[:8]}-{id(kw)}", text=text, **kw)


def texts(live: Live, payloads: list[RawPayload] | None = None) -> list[str]:
    return [e.text for e in live.events(payloads) if isinstance(e, Message)]


async def lost(live: Live) -> BaseException:
    assert live.task is not None
    async with asyncio.timeout(20):
        results = await asyncio.gather(live.task, return_exceptions=True)
    live.task = None
    assert isinstance(results[0], BaseException), "subscribe() should have ended with an error"
    return results[0]


async def test_resume_after_a_drop_replays_what_was_missed_once(world: Any) -> None:
    live = await Live(world.connector()).start()
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    fake.post(cid, bob, "before")
    await live.wait_text("before")
    await fake.gateway.drop_connections()
    assert isinstance(await lost(live), TransientError)
    fake.post(cid, bob, "missed 1")
    fake.post(cid, bob, "missed 2")
    await live.connector.disconnect()  # what the supervisor does after a TransientError
    await live.start()
    try:
        assert live.connector.gateway is not None and live.connector.gateway.resumed
        assert live.snapshot is not None and live.snapshot.history == ()
        await live.wait_text("missed 2")
        assert texts(live) == ["before", "missed 1", "missed 2"]
        assert (fake.gateway.identifies, fake.gateway.resumes) == (1, 1)
    finally:
        await live.stop()


async def test_refused_resume_resyncs_from_history_without_loss_or_duplicates(world: Any) -> None:
    live = await Live(world.connector()).start()
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    fake.post(cid, bob, "seen")
    await live.wait_text("seen")
    await fake.gateway.drop_connections()
    await lost(live)
    missed = [fake.post(cid, bob, f"missed {i}")["id"] for i in range(3)]
    fake.gateway.invalidate_sessions()  # the resume window passed
    await live.connector.disconnect()
    await live.start()
    try:
        assert live.connector.gateway is not None and not live.connector.gateway.resumed
        assert live.snapshot is not None
        history = [e for e in live.events(list(live.snapshot.history)) if isinstance(e, Message)]
        assert [m.remote_id for m in history] == missed
        fake.post(cid, bob, "after")
        await live.wait_text("after")
        assert texts(live) == ["seen", "after"]  # live: no replay of what history brought
        assert fake.gateway.identifies == 2
    finally:
        await live.stop()


class HoldingSink:
    """A sink whose acks wait until ``release`` (the core has not committed yet)."""

    def __init__(self) -> None:
        self.payloads: list[RawPayload] = []
        self.acks: list[Ack] = []

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        self.payloads.append(payload)
        if ack is not None:
            self.acks.append(ack)


async def test_sequence_saved_for_resume_never_passes_an_unacknowledged_dispatch(world: Any) -> None:
    state, sink = MemoryStateStore(), HoldingSink()
    connector = world.connector(state=state, sink=sink)
    await connector.connect()
    task = asyncio.create_task(connector.subscribe())
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    fake.post(cid, bob, "one")
    fake.post(cid, bob, "two")
    await wait_until(lambda: len(sink.payloads) == 2)
    [session] = fake.gateway.sessions.values()
    seq_one = next(f["s"] for f in session.backlog if f.get("d", {}).get("content") == "one")
    connector._saved_at = 0.0  # let the next ack save at once
    await sink.acks[1]()  # "two" is committed, "one" is not
    assert state.values["gateway"]["seq"] == seq_one - 1
    # The bridge dies here (no clean close): a new instance on the same state resumes and gets both again.
    task.cancel()
    await fake.gateway.drop_connections()
    again = world.connector(state=state)
    live = await Live(again).start()
    try:
        await live.wait_text("two")
        assert texts(live) == ["one", "two"]
    finally:
        await live.stop()
        await connector.disconnect()


async def test_429_and_5xx_raise_for_the_core_to_retry_and_the_send_goes_out_after_the_wait(
    world: Any,
) -> None:
    connector: DiscordConnector = world.connector()
    await connector.connect()
    try:
        cid, fake = world.channel["id"], world.fake
        fake.rest.inject_429(SEND, retry_after=0.4)
        with pytest.raises(RateLimited) as first:
            await connector.send_message(cid, out("held"))
        assert first.value.retry_after == pytest.approx(0.4)
        sent_before = len(fake.rest.requests)
        with pytest.raises(RateLimited):  # the bucket is known to be empty: nothing goes over the wire
            await connector.send_message(cid, out("held"))
        assert len(fake.rest.requests) == sent_before
        await asyncio.sleep(first.value.retry_after)
        result = await connector.send_message(cid, out("held"))
        assert fake.messages[cid][result.remote_id]["content"] == "held"
        fake.rest.inject_error(502, SEND)
        with pytest.raises(TransientError, match="502"):
            await connector.send_message(cid, out("retried"))
        fake.rest.inject_429(retry_after=0.3, is_global=True)
        with pytest.raises(RateLimited, match="global"):
            await connector.set_typing(cid, True)
        with pytest.raises(RateLimited, match="global"):  # every route waits for the global limit
            await connector.send_message(cid, out("later"))
    finally:
        await connector.disconnect()


async def test_revoked_token_is_bad_credentials_at_connect_and_while_connected(world: Any) -> None:
    live = await Live(world.connector()).start()
    await world.fake.revoke(world.token)
    assert isinstance(await lost(live), AuthenticationFailed)
    await live.connector.disconnect()
    with pytest.raises(AuthenticationFailed):
        await world.connector().connect()


async def test_a_link_that_stops_acknowledging_heartbeats_is_reconnected(world: Any) -> None:
    world.fake.gateway.heartbeat_interval_ms = 200
    live = await Live(world.connector()).start()
    world.fake.gateway.ack_heartbeats = False
    error = await lost(live)
    assert isinstance(error, TransientError) and "deaf" in str(error)
    await live.connector.disconnect()


async def test_webhook_sends_as_the_person_and_its_echo_is_ours_with_the_txn(world: Any) -> None:
    settings = {
        "allow_webhooks": True,
        "person_name": "Alice",
        "person_avatar_url": "https://example.org/a.png",
    }
    live = await Live(world.connector(**settings)).start()
    fake, cid = world.fake, world.channel["id"]
    try:
        message = out("hello from alice")
        result = await live.connector.send_message(cid, message)
        sent = fake.messages[cid][result.remote_id]
        assert sent["author"]["username"] == "Alice" and sent["content"] == "hello from alice"
        assert sent["_avatar_url"] == "https://example.org/a.png" and sent["webhook_id"] in fake.webhooks
        echo = await live.wait_text("hello from alice")
        assert echo.remote_id == result.remote_id and echo.sender.is_self and echo.txn_id == message.txn_id
        await live.connector.send_message(cid, out("second"))
        assert len(fake.webhooks) == 1  # one webhook per channel, kept in the account's secrets
        assert live.connector.ctx.secrets.values[f"webhook:{cid}"]  # type: ignore[attr-defined]
        await live.connector.edit(cid, result.remote_id, out("edited"))
        assert fake.messages[cid][result.remote_id]["content"] == "edited"
        await live.connector.delete(cid, result.remote_id)
        assert result.remote_id not in fake.messages[cid]
    finally:
        await live.stop()


async def test_without_webhooks_the_bot_sends_with_the_name_and_replies_by_reference(world: Any) -> None:
    live = await Live(world.connector(person_name="Alice")).start()
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    try:
        theirs = fake.post(cid, bob, "question")
        message = out("answer", reply_to=theirs["id"])
        result = await live.connector.send_message(cid, message)
        sent = fake.messages[cid][result.remote_id]
        assert sent["content"] == "**Alice**: answer" and sent["author"]["id"] == world.bot["id"]
        assert sent["message_reference"]["message_id"] == theirs["id"]
        echo = await live.wait_text("**Alice**: answer")
        assert echo.reply_to == theirs["id"] and echo.sender.is_self and echo.txn_id == message.txn_id
        styled = out("plain", formatted="**bold**", format=TextFormat.MARKDOWN)
        assert fake.messages[cid][(await live.connector.send_message(cid, styled)).remote_id]["content"] == (
            "**Alice**: **bold**"
        )
        html = out("plain too", formatted="<b>plain</b> too", format=TextFormat.HTML)
        assert fake.messages[cid][(await live.connector.send_message(cid, html)).remote_id]["content"] == (
            "**Alice**: plain too"
        )
        long = await live.connector.send_message(cid, out("word " * 500))
        assert len(long.extra_parts) == 1
        assert all(len(fake.messages[cid][i]["content"]) <= 2000 for i in (long.remote_id, *long.extra_parts))
    finally:
        await live.stop()


async def test_threads_both_ways(world: Any) -> None:
    live = await Live(world.connector(allow_webhooks=True, person_name="Alice")).start()
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    try:
        thread = fake.create_thread(cid, "topic", bob)
        await wait_until(lambda: thread["id"] in live.connector.channels)
        fake.post(thread["id"], bob, "in the thread")
        inbound = await live.wait_text("in the thread")
        assert inbound.conversation_id == thread["id"] and inbound.thread_id == thread["id"]
        result = await live.connector.send_message(thread["id"], out("reply in thread"))
        assert fake.messages[thread["id"]][result.remote_id]["author"]["username"] == "Alice"
        execute = [r for r in fake.rest.requests if r.template == "/webhooks/{webhook_id}/{webhook_token}"]
        assert execute[-1].query == {"wait": "true", "thread_id": thread["id"]}
    finally:
        await live.stop()


async def test_files_both_ways_through_the_cores_media_helper(world: Any, media: Media) -> None:
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    data = bytes(range(256)) * 2000
    stored = await media.receive(
        chunks_of(data, 64_000), name="report.bin", mime_type="application/octet-stream"
    )
    live = await Live(world.connector(media=media, allow_webhooks=True)).start()
    try:
        files = (Attachment(name="report.bin", url=stored.url),)
        result = await live.connector.send_message(cid, out("a file", attachments=files))
        [attachment] = fake.messages[cid][result.remote_id]["attachments"]
        assert attachment["filename"] == "report.bin" and fake.files[attachment["id"]][1] == data
        local = out("no", attachments=(Attachment(name="passwd", url="file:///etc/passwd"),))
        with pytest.raises(AttachmentRefused):
            await live.connector.send_message(cid, local)
        fake.post(cid, bob, "look", files={"files[0]": ("dog.txt", b"woof")})
        inbound = await live.wait_text("look")
        [received] = inbound.attachments
        assert received.name == "dog.txt" and received.size == 4 and received.url
    finally:
        await live.stop()


async def test_reconnect_request_resumes_the_same_session(world: Any) -> None:
    live = await Live(world.connector()).start()
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    fake.gateway.request_reconnect()  # op 7
    error = await lost(live)
    assert isinstance(error, TransientError) and "op 7" in str(error)
    fake.post(cid, bob, "while reconnecting")
    await live.connector.disconnect()
    await live.start()
    try:
        assert live.connector.gateway is not None and live.connector.gateway.resumed
        await live.wait_text("while reconnecting")
        assert fake.gateway.identifies == 1
    finally:
        await live.stop()


async def test_a_bot_send_repeated_after_a_crash_is_dropped_by_discord_and_its_echo_names_the_txn(
    world: Any,
) -> None:
    fake, cid, state = world.fake, world.channel["id"], MemoryStateStore()
    message = OutboundMessage(txn_id="mb-" + "ab" * 16, text="sent once")
    first = world.connector(state=state, sink=HoldingSink())  # nothing it receives gets committed
    await first.connect()
    task = asyncio.create_task(first.subscribe())
    sent = await first.send_message(cid, message)
    await wait_until(lambda: len(first.ctx.sink.payloads) == 1)  # type: ignore[attr-defined]
    task.cancel()  # the bridge dies before recording the send: its memory is gone, no clean close
    await fake.gateway.drop_connections()
    await asyncio.gather(task, return_exceptions=True)
    live = await Live(world.connector(state=state)).start()
    try:
        assert live.connector.gateway is not None and live.connector.gateway.resumed
        echo = await live.wait_text("sent once")  # replayed by RESUME, with its nonce
        assert echo.remote_id == sent.remote_id and echo.sender.is_self and echo.txn_id == message.txn_id
        again = await live.connector.send_message(cid, message)  # the delivery worker's resend
        assert again.remote_id == sent.remote_id
        assert [m["content"] for m in fake.messages[cid].values()] == ["sent once"]
    finally:
        await live.stop()
        await first.disconnect()


async def test_history_counts_as_caught_up_only_once_its_cursor_is_stored(world: Any) -> None:
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    connector = world.connector()
    await connector.connect()
    first = await connector.sync_state(None)
    await connector.disconnect()
    missed = [fake.post(cid, bob, f"missed {i}")["id"] for i in range(2)]

    async def resync(cursor: str | None) -> list[str]:
        await connector.connect()  # a clean stop ended the session: IDENTIFY, then history
        try:
            snapshot = await connector.sync_state(cursor)
        finally:
            await connector.disconnect()
        resync.cursor = snapshot.cursor  # type: ignore[attr-defined]
        return [str(p["d"]["id"]) for p in snapshot.history]

    assert await resync(first.cursor) == missed
    # The bridge died before the core stored that history (and its cursor): the next sync brings it again.
    assert await resync(first.cursor) == missed
    assert await resync(resync.cursor) == []  # type: ignore[attr-defined]


async def test_backfill_and_catch_up_report_their_progress(world: Any) -> None:
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    for i in range(3):
        fake.post(cid, bob, f"old {i}")
    connector = world.connector(backfill_messages=2)
    await connector.connect()
    try:
        first = await connector.sync_state(None)  # the first link: the backfill
    finally:
        await connector.disconnect()
    progress = connector.ctx.progress
    assert [(r.phase.value, r.done, r.finished) for r in progress.of(cid)] == [
        ("history", 2, False),
        ("history", 2, True),
    ]
    fake.post(cid, bob, "missed")
    await connector.connect()  # a fresh IDENTIFY: the catch-up after the committed cursor
    try:
        await connector.sync_state(first.cursor)
    finally:
        await connector.disconnect()
    assert [(r.phase.value, r.done, r.finished) for r in progress.of(cid)][2:] == [
        ("catchup", 1, False),
        ("catchup", 1, True),
    ]


async def test_members_are_listed_and_their_changes_arrive(world: Any) -> None:
    fake, cid, guild = world.fake, world.channel["id"], world.guild["id"]
    live = await Live(world.connector()).start()
    try:
        assert live.snapshot is not None
        [conversation] = [c for c in live.snapshot.conversations if c.remote_id == cid]
        assert conversation.name == "general" and set(conversation.members) == {
            world.bot["id"],
            world.bob["id"],
        }
        assert {(c.remote_id, c.display_name, c.is_self) for c in live.snapshot.contacts} == {
            (world.bot["id"], "bridge-bot", True),
            (world.bob["id"], "bob", False),
        }
        carol = fake.add_user("carol")
        fake.add_member(guild, carol["id"])
        joined = await live.wait_event(lambda e: getattr(e, "action", None) == "join")
        assert joined.conversation_id == cid and joined.user.user_id == carol["id"]  # type: ignore[union-attr]
        fake.remove_member(guild, carol["id"])
        await live.wait_event(lambda e: getattr(e, "action", None) == "leave")
        after = await live.connector.sync_state(None)
        assert carol["id"] not in {c.remote_id for c in after.contacts}
    finally:
        await live.stop()


async def test_direct_messages_both_ways_go_as_the_bot(world: Any) -> None:
    fake, bob = world.fake, world.bob["id"]
    dm = fake.open_dm(bob, world.bot["id"])
    live = await Live(world.connector(allow_webhooks=True, person_name="Alice")).start()
    try:
        fake.post(dm["id"], bob, "psst")
        inbound = await live.wait_text("psst")
        assert inbound.conversation_id == dm["id"] and not inbound.sender.is_self
        result = await live.connector.send_message(dm["id"], out("hi bob"))
        sent = fake.messages[dm["id"]][result.remote_id]
        assert sent["author"]["id"] == world.bot["id"] and sent["content"] == "**Alice**: hi bob"
        assert fake.webhooks == {}  # DMs have no webhooks
        assert not live.connector.conversation_capabilities(dm["id"]).threads
        assert live.connector.conversation_capabilities(world.channel["id"]).threads
    finally:
        await live.stop()


async def test_the_bridges_webhook_is_found_again_when_its_secret_is_gone(world: Any) -> None:
    cid = world.channel["id"]
    for _ in range(2):  # the second connector has fresh (empty of webhooks) secrets
        live = await Live(world.connector(allow_webhooks=True, person_name="Alice")).start()
        try:
            await live.connector.send_message(cid, out("via webhook"))
        finally:
            await live.stop()
    assert len(world.fake.webhooks) == 1


async def test_privileged_intents_switched_off_in_the_portal_are_a_permanent_error(world: Any) -> None:
    world.fake.privileged_intents = 0
    with pytest.raises(PermanentError, match="4014"):
        await world.connector().connect()
    live = await Live(world.connector(message_content_intent=False, members_intent=False)).start()
    try:
        world.fake.post(world.channel["id"], world.bob["id"], "hidden")
        event = await live.wait_event(lambda e: isinstance(e, Message))
        assert isinstance(event, Message) and event.text == ""  # Discord withholds the content
    finally:
        await live.stop()


async def test_a_process_that_resumes_still_knows_its_channels_but_not_its_members(world: Any) -> None:
    fake, cid, bob, state = world.fake, world.channel["id"], world.bob["id"], MemoryStateStore()
    thread = fake.create_thread(cid, "topic", bob)
    first = await Live(world.connector(state=state)).start()
    assert first.snapshot is not None and first.snapshot.complete  # GUILD_CREATE listed every member
    fake.post(cid, bob, "seen")
    await first.wait_text("seen")
    await first.connector._save(force=True)  # type: ignore[attr-defined]
    assert first.task is not None
    first.task.cancel()  # then the process dies: no clean close
    await fake.gateway.drop_connections()
    live = await Live(world.connector(state=state, allow_webhooks=True, person_name="Alice")).start()
    try:
        assert live.connector.gateway is not None and live.connector.gateway.resumed
        assert live.snapshot is not None and not live.snapshot.complete  # members unknown after RESUME
        assert {c.remote_id: c.members for c in live.snapshot.conversations} == {cid: (), thread["id"]: ()}
        fake.post(thread["id"], bob, "in the thread")
        inbound = await live.wait_text("in the thread")
        assert inbound.thread_id == thread["id"]
        result = await live.connector.send_message(thread["id"], out("answer"))
        assert fake.messages[thread["id"]][result.remote_id]["webhook_id"] in fake.webhooks
        await live.connector._save(force=True)  # type: ignore[attr-defined]
        assert state.values["gateway"]["last_seen"][thread["id"]] == inbound.remote_id
    finally:
        await live.stop()
        await first.connector.disconnect()


async def test_a_webhook_deleted_in_discord_is_made_again_and_the_account_stays_linked(world: Any) -> None:
    fake, cid = world.fake, world.channel["id"]
    live = await Live(world.connector(allow_webhooks=True, person_name="Alice")).start()
    try:
        await live.connector.send_message(cid, out("first"))
        [old] = list(fake.webhooks)
        del fake.webhooks[old]  # a moderator deleted it
        result = await live.connector.send_message(cid, out("second"))
        [new] = list(fake.webhooks)
        assert new != old and fake.messages[cid][result.remote_id]["webhook_id"] == new
        echo = await live.wait_text("second")
        assert echo.sender.is_self
    finally:
        await live.stop()


async def test_a_bot_removed_from_a_server_forgets_its_channels(world: Any) -> None:
    live = await Live(world.connector()).start()
    try:
        world.fake.remove_member(world.guild["id"], world.bot["id"])
        await wait_until(lambda: world.channel["id"] not in live.connector.channels)
        snapshot = await live.connector.sync_state(None)
        assert snapshot.conversations == () and snapshot.contacts == ()
    finally:
        await live.stop()
