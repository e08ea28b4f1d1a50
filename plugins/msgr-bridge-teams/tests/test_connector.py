"""The Teams connector against the fake: tokens renewed before they expire (and the schedule read back after a
restart), a revoked grant turning the account bad_credentials with Microsoft's reason, throttling waited out
without losing anything, catch-up after downtime from the committed cursors, and echoes of our sends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from msgr_bridge_teams import TeamsConnector
from msgr_bridge_teams.config import TeamsSettings

from msgr_bridge.errors import AuthenticationFailed, ConfigError, NotSupported, RateLimited
from msgr_bridge.schema import Delete, Edit, Message, OutboundMessage, Reaction
from msgr_bridge.testing.fakes import HoldingSink, MemoryStateStore, make_context
from msgr_bridge.testing.harness import Live


def out(text: str) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{text}", text=text)


async def until(check: Any, timeout: float = 20.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := check()):  # noqa: ASYNC110 - the fake's model has no change event
            await asyncio.sleep(0.05)
        return found


async def test_access_token_is_renewed_before_it_expires(tenant: Any) -> None:
    fake = tenant.fake
    fake.token_lifetime_s = 3
    result = await tenant.link(refresh_margin_s=1.5)
    ctx = await tenant.context(result)
    connector = TeamsConnector(ctx)
    async with Live(connector):
        before = len(fake.grants)
        await until(lambda: len(fake.grants) >= before + 2)  # two renewals, each ahead of the expiry
    graph = fake.graph_requests()
    assert graph and all(r.user == tenant.alice for r in graph), "a Graph call went out with an expired token"
    saved = ctx.secrets.values["token_cache"]
    assert saved != result.secrets["token_cache"], "the renewed cache (rotated refresh token) was not stored"
    # After a restart the schedule comes from the stored cache: the new instance knows the same expiry.
    again = TeamsConnector(
        make_context(
            "teams",
            remote_user_id=result.remote_user_id,
            settings=result.settings,
            secrets={"token_cache": saved},
        )
    )
    await again.tokens.open()
    try:
        assert again.tokens.expires_at() == pytest.approx(connector.tokens.expires_at(), abs=1)
        assert again.tokens.expires_at() > time.time() - 5
    finally:
        again.tokens.close()


async def test_revoked_grant_is_bad_credentials_with_the_reason(tenant: Any) -> None:
    connector = TeamsConnector(await tenant.context())
    live = await Live(connector).start()
    tenant.fake.identity.revoke(tenant.alice)
    assert live.task is not None
    with pytest.raises(AuthenticationFailed) as raised:
        await asyncio.wait_for(live.task, 20)
    live.task = None
    await live.stop()
    assert raised.value.code == "bad_credentials"
    assert "AADSTS50173" in raised.value.message and "invalid_grant" in raised.value.message
    with pytest.raises(AuthenticationFailed):  # and reconnecting does not get past it
        await connector.connect()
    await connector.disconnect()


async def test_throttled_send_raises_rate_limited_and_goes_out_after(tenant: Any) -> None:
    fake = tenant.fake
    connector = TeamsConnector(await tenant.context())
    await connector.connect()
    try:
        fake.throttle(f"/chats/{tenant.chat}/messages", status=429, retry_after=2, count=1)
        with pytest.raises(RateLimited) as raised:
            await connector.send_message(tenant.chat, out("held"))
        assert raised.value.retry_after == 2
        assert not fake.chats[tenant.chat]["messages"], "a throttled send must create nothing"
        sent = await connector.send_message(tenant.chat, out("held"))
        assert [m["id"] for m in fake.chats[tenant.chat]["messages"]] == [sent.remote_id]
    finally:
        await connector.disconnect()


async def test_throttled_polling_waits_and_loses_nothing(tenant: Any) -> None:
    fake = tenant.fake
    connector = TeamsConnector(await tenant.context())
    async with Live(connector) as live:
        fake.throttle(f"/chats/{tenant.chat}/messages", status=503, retry_after=1, count=2)
        fake.post_as(tenant.bob, tenant.chat, "<p>during throttling</p>")
        started = time.monotonic()
        await live.wait_text("during throttling")
    assert time.monotonic() - started >= 1.0, "the Retry-After was not honoured"
    assert all(t.count == 0 for t in fake.throttles)


async def test_catch_up_after_downtime_from_committed_cursors(tenant: Any) -> None:
    fake = tenant.fake
    state = MemoryStateStore()
    result = await tenant.link()
    first = TeamsConnector(await tenant.context(result, state=state))
    async with Live(first) as live:
        seen = fake.post_as(tenant.bob, tenant.chat, "<p>seen</p>")
        await live.wait_text("seen")
    missed = [fake.post_as(tenant.bob, tenant.chat, f"<p>missed {i}</p>") for i in range(3)]
    seen["body"]["content"] = "<p>seen (edited)</p>"
    seen["lastEditedDateTime"] = fake.now()
    fake.touch(seen)
    fake.chats[tenant.chat]["messages"][1]["deletedDateTime"] = fake.now()
    fake.touch(missed[0])
    # A new process: same stored state and secrets, no sync cursor (as if the core lost it), fresh memory.
    second = TeamsConnector(await tenant.context(result, state=state))
    await second.connect()
    try:
        snapshot = await second.sync_state(None)
    finally:
        await second.disconnect()
    events = [e for p in snapshot.history for e in second.convert(p, second.ctx.account)]
    texts = [e.text for e in events if isinstance(e, Message)]
    assert texts == ["missed 1", "missed 2"], texts  # missed 0 was deleted before we saw it
    assert "seen" not in texts, "a committed message was fetched again"
    assert [e.text for e in events if isinstance(e, Edit)] == ["seen (edited)"]
    assert [e.target_id for e in events if isinstance(e, Delete)] == [missed[0]["id"]]


async def test_pushed_but_uncommitted_is_fetched_again_after_restart(tenant: Any) -> None:
    fake = tenant.fake
    state, sink = MemoryStateStore(), HoldingSink()
    result = await tenant.link()
    first = TeamsConnector(await tenant.context(result, state=state, sink=sink))
    async with Live(first):
        fake.post_as(tenant.bob, tenant.chat, "<p>not committed</p>")
        await sink.wait_for(lambda p: "not committed" in str(p))
    second = TeamsConnector(await tenant.context(result, state=state))
    await second.connect()
    try:
        snapshot = await second.sync_state(None)
    finally:
        await second.disconnect()
    history = [e for p in snapshot.history for e in second.convert(p, second.ctx.account)]
    assert "not committed" in [e.text for e in history if isinstance(e, Message)]


async def test_echo_of_our_send_carries_the_txn_id_and_reactions_arrive(tenant: Any) -> None:
    fake = tenant.fake
    connector = TeamsConnector(await tenant.context())
    async with Live(connector) as live:
        fake.slow(f"/chats/{tenant.chat}/messages", 1.0)  # polls see the message before the send returns
        sent = await connector.send_message(tenant.chat, out("mine"))
        echo = await live.wait_text("mine")
        assert echo.remote_id == sent.remote_id and echo.txn_id == "txn-mine" and echo.sender.is_self
        msg = fake.find(tenant.chat, sent.remote_id)
        msg["reactions"].append(
            {
                "reactionType": "like",
                "createdDateTime": fake.now(),
                "user": {"user": {"id": tenant.bob, "userIdentityType": "aadUser"}},
            }
        )
        fake.touch(msg)
        reaction = await live.wait_event(lambda e: isinstance(e, Reaction))
    assert isinstance(reaction, Reaction) and reaction.emoji == "👍" and reaction.sender.user_id == tenant.bob


async def test_auth_code_flow_is_refused_with_the_reason(tenant: Any) -> None:
    flow = TeamsConnector.link_flow(tenant.settings(flow="auth_code"))
    with pytest.raises(NotSupported) as raised:
        await flow.start()
    assert "redirect" in raised.value.explain() and "device code" in raised.value.explain()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({}, "client id"),
        ({"client_id": "x", "authority_host": "http://127.0.0.1:1"}, "authority_host"),
        ({"client_id": "x", "channels": ["no-slash"]}, "channels"),
        ({"client_id": "x", "poll_min_s": "soon"}, "poll_min_s"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        TeamsSettings.from_mapping(settings)
    assert named in raised.value.explain()


async def test_a_send_cut_off_by_a_crash_is_recognised_by_its_echo(tenant: Any) -> None:
    """Graph made the message but the process died before it recorded the answer: after the restart the
    echo still carries the send's txn id (``pending.py``), so the outbox marks it sent instead of sending
    it twice."""
    fake = tenant.fake
    result = await tenant.link()
    state = MemoryStateStore()
    first = TeamsConnector(await tenant.context(result, state=state))
    await first.connect()
    fake.slow("/chats", 5.0)  # carried out at once, answered 5 s later
    task = asyncio.create_task(first.send_message(tenant.chat, out("cut off")))
    await until(
        lambda: any(m["body"]["content"] == "<p>cut off</p>" for m in fake.chats[tenant.chat]["messages"])
    )
    task.cancel()  # the process dies before the answer
    await first.disconnect()
    assert [k for k in state.values if k.startswith("pending/")] == ["pending/txn-cut off"]
    again = TeamsConnector(await tenant.context(result, state=state))
    async with Live(again) as live:
        assert live.snapshot is not None
        echoes = [
            e
            for e in live.events(list(live.snapshot.history))
            if isinstance(e, Message) and e.text == "cut off"
        ]
        assert [e.txn_id for e in echoes] == ["txn-cut off"]
    assert state.values["pending/txn-cut off"]["id"] == echoes[0].remote_id


async def test_a_kill_after_the_answer_still_gives_the_echo_its_txn_id(tenant: Any) -> None:
    """The POST returned but the process died before the outbox recorded it: the message id kept in keyed
    state gives the echo after the restart its txn id."""
    result = await tenant.link()
    state = MemoryStateStore()
    first = TeamsConnector(await tenant.context(result, state=state))
    await first.connect()
    sent = await first.send_message(tenant.chat, out("answered"))
    await first.disconnect()  # before any poll saw the echo
    again = TeamsConnector(await tenant.context(result, state=state))
    async with Live(again) as live:
        assert live.snapshot is not None
        echoes = [e for e in live.events(list(live.snapshot.history)) if isinstance(e, Message)]
        assert [(e.remote_id, e.txn_id) for e in echoes if e.text == "answered"] == [
            (sent.remote_id, "txn-answered")
        ]
