"""The Slack connector's own behaviour against the fake: acknowledgements after commit, reconnects,
deafness, revoked tokens, Slack's errors and limits, echoes, the user directory, uploads and catch-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from msgr_bridge_slack import SlackConnector
from msgr_bridge_slack.catchup import STATE_KEY
from slack_world import Slack, eventually

from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError
from msgr_bridge.schema import Message, OutboundMessage, ReactionAction
from msgr_bridge.testing.fakes import HoldingSink, MemoryStateStore
from msgr_bridge.testing.harness import Live


@pytest.fixture
async def live(slack: Slack) -> AsyncIterator[Live]:
    async with Live(slack.connector()) as running:
        yield running


def texts(live: Live) -> list[str]:
    return [e.text for e in live.events() if isinstance(e, Message)]


async def test_envelopes_are_acknowledged_only_after_commit(slack: Slack) -> None:
    sink = HoldingSink()
    async with Live(slack.connector(sink=sink)) as live:
        await slack.bob_web.chat_postMessage(channel=slack.general.id, text="ack me later")
        await live.wait_text("ack me later")
        await asyncio.sleep(0.2)
        assert slack.fake.acks == [] and len(sink.held_acks) == 1
        await sink.held_acks[0]()
        await eventually(lambda: len(slack.fake.acks) == 1)


async def test_disconnect_envelope_opens_a_new_socket(slack: Slack, live: Live) -> None:
    await slack.fake.send_disconnect()
    await eventually(lambda: [r.method for r in slack.fake.requests].count("apps.connections.open") == 2)
    await eventually(lambda: slack.fake.sessions)
    await slack.bob_web.chat_postMessage(channel=slack.general.id, text="after refresh")
    await live.wait_text("after refresh")
    assert live.task is not None and not live.task.done()


async def test_a_deaf_socket_is_given_up(slack: Slack) -> None:
    connector = slack.connector(ping_interval_s=0.1, silence_timeout_s=0.5)
    await connector.connect()
    task = asyncio.create_task(connector.subscribe())
    await eventually(lambda: slack.fake.sessions)
    slack.fake.deafen()
    with pytest.raises(TransientError, match="silent"):
        await asyncio.wait_for(task, 5)
    await connector.disconnect()


@pytest.mark.parametrize("error", ["token_revoked", "invalid_auth", "account_inactive", "not_authed"])
async def test_a_silently_revoked_token_is_found_by_the_liveness_check(slack: Slack, error: str) -> None:
    connector = slack.connector(liveness_interval_s=0.2, ping_interval_s=0.1)
    await connector.connect()
    task = asyncio.create_task(connector.subscribe())
    await eventually(lambda: slack.fake.sessions)
    slack.fake.revoke(slack.user_token.value, error, close_sockets=False)
    with pytest.raises(AuthenticationFailed, match=error):
        await asyncio.wait_for(task, 5)
    await connector.disconnect()
    with pytest.raises(AuthenticationFailed):
        await connector.connect()


async def test_rtm_session_token_and_its_cookie(slack: Slack) -> None:
    async with Live(slack.connector("rtm")) as live:
        await slack.bob_web.chat_postMessage(channel=slack.general.id, text="over rtm")
        await live.wait_text("over rtm")
    cookie = slack.session_token.cookie or ""
    assert all(cookie not in str(r.args) for r in slack.fake.requests)  # a header, never an argument
    bad = slack.connector("rtm")
    await bad.ctx.secrets.put("cookie_d", "xoxd-wrong")
    with pytest.raises(AuthenticationFailed):
        await bad.connect()


async def test_slack_errors_become_bridge_errors(slack: Slack, live: Live) -> None:
    c, chan = live.connector, slack.general.id
    slack.fake.fail("chat.postMessage", "ratelimited", retry_after=3)
    with pytest.raises(RateLimited) as limited:
        await c.send_message(chan, OutboundMessage(txn_id="t1", text="wait"))
    assert limited.value.retry_after == 3.0
    with pytest.raises(PermanentError, match="channel_not_found"):
        await c.send_message("C0MISSING", OutboundMessage(txn_id="t2", text="x"))
    slack.fake.fail("chat.update", "internal_error", status=500)
    with pytest.raises(TransientError):
        await c.edit(chan, "1.0", OutboundMessage(txn_id="t3", text="x"))
    assert not isinstance(PermanentError(""), TransientError)


async def test_own_send_comes_back_as_the_echo_with_the_same_id(slack: Slack, live: Live) -> None:
    c, chan = live.connector, slack.general.id
    root = await c.send_message(chan, OutboundMessage(txn_id="t1", text="**root** for <everyone>"))
    sent = slack.general.messages[root.remote_id]
    assert sent.text == "**root** for &lt;everyone&gt;"
    echo = await live.wait_event(lambda e: isinstance(e, Message) and e.remote_id == root.remote_id)
    assert isinstance(echo, Message) and echo.sender.is_self and echo.text == "**root** for <everyone>"
    reply = await c.send_message(chan, OutboundMessage(txn_id="t2", text="reply", thread_id=root.remote_id))
    assert slack.general.messages[reply.remote_id].thread_ts == root.remote_id
    await c.react(chan, root.remote_id, "👍", ReactionAction.ADD)
    await c.react(chan, root.remote_id, "👍", ReactionAction.ADD)  # already there: fine
    assert slack.general.messages[root.remote_id].reactions == {"+1": [slack.me.id]}


async def test_names_follow_user_changes(slack: Slack, live: Live) -> None:
    await slack.bob_web.chat_postMessage(channel=slack.general.id, text="before")
    before = await live.wait_text("before")
    slack.fake.workspace.update_user(slack.bob.id, name="robert")
    await eventually(lambda: live.connector.users.get(slack.bob.id) == "robert")  # type: ignore[attr-defined]
    await slack.bob_web.chat_postMessage(channel=slack.general.id, text="after")
    after = await live.wait_text("after")
    assert (before.sender.display_name, after.sender.display_name) == ("bob", "robert")


async def test_upload_streams_the_bytes(slack: Slack, live: Live) -> None:
    web = live.connector.web  # type: ignore[attr-defined]
    body = [b"x" * 70_000, b"y" * 30_000]

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body:
            yield chunk

    file_id = (await web.upload(slack.general.id, "big.bin", 100_000, chunks(), comment="a file"))["id"]
    assert slack.fake.workspace.files[file_id].content == b"".join(body)
    event = await live.wait_event(lambda e: isinstance(e, Message) and bool(e.attachments))
    assert isinstance(event, Message) and event.attachments[0].remote_id == file_id and event.text == "a file"


async def sent_while_away(slack: Slack, n: int) -> list[str]:
    texts = [f"missed {i}" for i in range(n)]
    for text in texts:
        slack.fake.workspace.post(slack.general.id, slack.bob.id, text)
    return texts


async def test_catch_up_is_paced_resumable_and_in_order(slack: Slack) -> None:
    slack.fake.non_marketplace = True  # 15 messages a call at most
    state = MemoryStateStore()
    first = slack.connector(state=state, history_per_minute=600, history_max_wait_s=0.05)
    await first.connect()
    snapshot = await first.sync_state(None)
    assert snapshot.complete and snapshot.history == ()
    missed = await sent_while_away(slack, 40)
    first.backlog = None  # a new connection's first sync
    await asyncio.sleep(0.15)  # the pacer allows one call now, the next 0.1 s later: past the 0.05 s budget
    partial = await first.sync_state(snapshot.cursor)
    assert not partial.complete and partial.history == ()
    assert len(state.values[STATE_KEY]["messages"]) == 15
    await first.disconnect()  # "killed": a new instance resumes from the state
    second: SlackConnector = slack.connector(state=state, history_per_minute=600, history_max_wait_s=5)
    await second.connect()
    calls_before = [r.method for r in slack.fake.requests].count("conversations.history")
    resumed = await second.sync_state(partial.cursor)
    await second.disconnect()
    calls = [r.method for r in slack.fake.requests].count("conversations.history") - calls_before
    got = [e.text for p in resumed.history for e in second.convert(p, second.ctx.account)]
    assert resumed.complete and got == missed and calls == 2  # pages 2 and 3, not page 1 again
    assert state.values[STATE_KEY] == {}


async def test_catch_up_reports_its_progress_per_page_and_when_finished(slack: Slack) -> None:
    slack.fake.non_marketplace = True  # 15 messages a call at most
    c = slack.connector(history_per_minute=6000)
    await c.connect()
    cursor = (await c.sync_state(None)).cursor
    await sent_while_away(slack, 40)
    c.backlog = None  # a new connection
    done = await c.sync_state(cursor)
    await c.disconnect()
    assert done.complete
    reports = [(r.phase.value, r.done, r.finished) for r in c.ctx.progress.of(slack.general.id)]
    assert reports[-4:] == [
        ("catchup", 15, False),
        ("catchup", 30, False),
        ("catchup", 40, False),
        ("catchup", 40, True),
    ]


async def test_catch_up_stops_on_slacks_429_and_resumes(slack: Slack) -> None:
    state = MemoryStateStore()
    c = slack.connector(state=state)
    await c.connect()
    cursor = (await c.sync_state(None)).cursor
    missed = await sent_while_away(slack, 3)
    slack.fake.fail("conversations.history", "ratelimited", retry_after=1)
    c.backlog = None  # a new connection
    stopped = await c.sync_state(cursor)
    assert not stopped.complete and stopped.history == ()
    await asyncio.sleep(1.05)
    done = await c.sync_state(stopped.cursor)
    await c.disconnect()
    assert done.complete and [e.text for p in done.history for e in c.convert(p, c.ctx.account)] == missed


def test_settings_are_validated() -> None:
    from msgr_bridge_slack.config import SlackSettings

    from msgr_bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="history_per_minute"):
        SlackSettings.from_mapping({"history_per_minute": 0})
    with pytest.raises(ConfigError, match="api_url"):
        SlackSettings.from_mapping({"api_url": "file:///etc/passwd"})
    assert SlackSettings.from_mapping({"token": "xoxp-secret"}).model_dump().get("token") is None


async def test_a_zero_wait_budget_still_makes_the_calls_it_may(slack: Slack) -> None:
    """``history_max_wait_s = 0`` means "never wait for the limit", not "never fetch": a call the limit
    allows now is made (it used to stop before the first call, so nothing was ever imported)."""
    c = slack.connector(history_max_wait_s=0, history_days=30)
    missed = await sent_while_away(slack, 3)
    await c.connect()
    snapshot = await c.sync_state(None)
    await c.disconnect()
    assert [e.text for p in snapshot.history for e in c.convert(p, c.ctx.account)] == missed


async def test_bad_or_uninteresting_events_never_stop_the_reader(slack: Slack, live: Live) -> None:
    """A message with a malformed ``ts`` is handed over (convert quarantines it) and the reader goes on (it
    used to crash on it while remembering the conversation's last ts); an event the store has no use for
    (``user_change``) is acknowledged without being pushed."""
    await eventually(lambda: slack.fake.sessions)
    (session,) = slack.fake.sessions
    session.offer(
        {"type": "message", "channel": slack.general.id, "user": slack.bob.id, "ts": "soon", "text": "x"}
    )
    slack.fake.workspace.update_user(slack.bob.id, name="robert")
    await slack.bob_web.chat_postMessage(channel=slack.general.id, text="still reading")
    await live.sink.wait_for(lambda p: p["event"].get("text") == "still reading")
    kinds = [p["event"]["type"] for p in live.sink.payloads]
    assert kinds.count("message") == 2 and "user_change" not in kinds
    await eventually(lambda: len(slack.fake.acks) == 3)


async def test_catch_up_brings_new_replies_of_threads(slack: Slack) -> None:
    ws, chan = slack.fake.workspace, slack.general.id
    c = slack.connector()
    await c.connect()
    old_root = ws.post(chan, slack.bob.id, "old root")
    cursor = (await c.sync_state(None)).cursor
    ws.post(chan, slack.bob.id, "reply to an old thread", thread_ts=old_root.ts)  # parent before the gap
    root = ws.post(chan, slack.bob.id, "new root")
    ws.post(chan, slack.bob.id, "reply 1", thread_ts=root.ts)
    ws.post(chan, slack.bob.id, "reply 2 (also in channel)", thread_ts=root.ts, reply_broadcast=True)
    c.backlog = None  # a new connection
    snapshot = await c.sync_state(cursor)
    await c.disconnect()
    got = [(e.text, e.thread_id) for p in snapshot.history for e in c.convert(p, c.ctx.account)]
    assert got == [("new root", None), ("reply 1", root.ts), ("reply 2 (also in channel)", root.ts)]
    # a reply whose thread started before the gap is not found: Slack's history does not show its parent


async def test_an_event_not_committed_before_a_crash_comes_again(slack: Slack) -> None:
    """The payload never committed (no ack) is sent again to the app's next socket; once committed, not."""
    sink = HoldingSink()
    async with Live(slack.connector(sink=sink)) as live:
        await slack.bob_web.chat_postMessage(channel=slack.general.id, text="commit me")
        await live.wait_text("commit me")
    assert slack.fake.acks == []
    again = HoldingSink()
    async with Live(slack.connector(sink=again)) as live:
        await live.wait_text("commit me")
        assert live.sink.payloads[0]["event"]["text"] == "commit me"
        await again.held_acks[0]()
        await eventually(lambda: len(slack.fake.acks) == 1)
    assert slack.fake.unacked.get(slack.app_token.value) in (None, [])


async def test_catch_up_starts_after_what_is_committed_not_what_was_pushed(slack: Slack) -> None:
    """A message pushed but never committed (the bridge died first) is fetched by the next catch-up: the
    per-conversation bound moves in the commit callback (it used to move at push time, skipping it)."""
    sink = HoldingSink()
    live = await Live(slack.connector("rtm", sink=sink)).start()
    try:
        await slack.bob_web.chat_postMessage(channel=slack.general.id, text="pushed, not committed")
        await live.wait_text("pushed, not committed")
        live.connector.backlog = None  # type: ignore[attr-defined]  # as on a new connection
        assert live.snapshot is not None
        again = await live.connector.sync_state(live.snapshot.cursor)
    finally:
        await live.stop()
    assert [e.text for p in again.history for e in live.events([p])] == ["pushed, not committed"]


async def test_typing_and_read_markers_arrive_over_rtm(slack: Slack) -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from msgr_bridge.schema import ReadReceipt, Typing

    ws = slack.fake.workspace
    bob_session = ws.issue_token(slack.bob.id, "session")
    bob = AsyncWebClient(
        token=bob_session.value, base_url=slack.fake.base_url, headers={"Cookie": f"d={bob_session.cookie}"}
    )
    url = (await bob.rtm_connect())["url"]
    async with (
        Live(slack.connector("rtm")) as live,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as sock,
    ):
        await sock.receive()  # hello
        await sock.send_json({"id": 1, "type": "typing", "channel": slack.general.id})
        typing = await live.wait_event(lambda e: isinstance(e, Typing))
        assert isinstance(typing, Typing) and typing.user.user_id == slack.bob.id
        theirs = ws.post(slack.general.id, slack.bob.id, "read me")
        await live.connector.mark_read(slack.general.id, theirs.ts)
        marker = await live.wait_event(lambda e: isinstance(e, ReadReceipt))
        assert isinstance(marker, ReadReceipt) and marker.up_to_id == theirs.ts and marker.reader.is_self


async def test_what_a_sync_cannot_wait_for_is_fetched_in_the_background(slack: Slack) -> None:
    """Under the history limit the connect-time sync hands over what fits in its budget and returns (so the
    socket is read at once); the rest is fetched at the limit's pace while subscribed, pushed in order."""
    slack.fake.non_marketplace = True
    c = slack.connector(history_per_minute=200, history_max_wait_s=0.05)  # a call every 0.3 s
    await c.connect()
    cursor = (await c.sync_state(None)).cursor
    await c.disconnect()
    missed = await sent_while_away(slack, 40)
    await asyncio.sleep(0.35)
    live = await Live(c).start(cursor)
    try:
        assert live.snapshot is not None and not live.snapshot.complete and live.snapshot.history == ()
        await live.wait_text("missed 39")
        history = [p for p in live.sink.payloads if p["source"] == "history"]
        assert [e.text for e in live.events(history)] == missed
        await eventually(lambda: c.backlog is not None and c.backlog.caught_up)
        assert (await c.sync_state(cursor)).complete
    finally:
        await live.stop()
