"""Change notifications through the bridge's hook route (``notify.py``): subscriptions made with Graph's
validation handshake and renewed before they expire (also after a restart), messages fetched on a
notification instead of by polling, lifecycle notifications handled, foreign notifications refused."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from msgr_bridge_teams import TeamsConnector

from msgr_bridge.schema import Message
from msgr_bridge.sdk.hooks import HookRegistry
from msgr_bridge.testing.fakes import CollectingSink, MemoryStateStore
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.hooks import serve_hooks


async def until(check: Any, timeout: float = 20.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := check()):  # noqa: ASYNC110 - the fake's model has no change event
            await asyncio.sleep(0.05)
        return found


@pytest.fixture
async def hooks() -> AsyncIterator[HookRegistry]:
    registry = HookRegistry(None)
    async with serve_hooks(registry):
        yield registry


async def connector(tenant: Any, hooks: HookRegistry, state: Any = None, **settings: Any) -> TeamsConnector:
    result = await tenant.link(**{"receive": "webhook", "webhook_poll_s": 60, "poll_max_s": 60, **settings})
    ctx = await tenant.context(result, hooks=hooks.for_account("teams", "acct-1"), state=state)
    return TeamsConnector(ctx)


def posts(fake: Any, path: str, method: str = "POST", since: float = 0.0) -> list[Any]:
    return [r for r in fake.graph_requests(since) if r.method == method and r.path == "/v1.0" + path]


def texts(live: Live) -> list[str]:
    return [e.text for e in live.events() if isinstance(e, Message)]


async def test_a_message_arrives_by_notification_not_by_polling(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    c = await connector(tenant, hooks)
    async with Live(c) as live:
        await until(lambda: fake.subscriptions)
        sub = next(iter(fake.subscriptions.values()))
        assert sub["resource"] == f"/chats/{tenant.chat}/messages"
        assert sub["notificationUrl"].endswith("/hooks/teams/acct-1/graph")
        assert sub["clientState"] and sub["clientState"] == c.notes.client_state
        await asyncio.sleep(0.5)  # the first round (catch-up) is over; the timer now waits 60 s
        listed = len(posts(fake, f"/chats/{tenant.chat}/messages", "GET"))
        began = time.monotonic()
        fake.post_as(tenant.bob, tenant.chat, "<p>pushed</p>")
        await until(lambda: "pushed" in texts(live), timeout=10)
        assert time.monotonic() - began < 10 < c.next_wait()
        assert len(posts(fake, f"/chats/{tenant.chat}/messages", "GET")) == listed + 1
        assert (sub["notificationUrl"], 202) in fake.deliveries


async def test_subscriptions_are_renewed_before_they_expire(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    c = await connector(tenant, hooks, subscription_s=3)
    async with Live(c) as live:
        await until(lambda: fake.subscriptions)
        sub_id = next(iter(fake.subscriptions))
        await until(lambda: len(posts(fake, f"/subscriptions/{sub_id}", "PATCH")) >= 3, timeout=15)
        assert list(fake.subscriptions) == [sub_id] and len(posts(fake, "/subscriptions")) == 1
        fake.post_as(tenant.bob, tenant.chat, "<p>still subscribed</p>")  # 4+ s after creation
        await until(lambda: "still subscribed" in texts(live), timeout=10)


async def test_the_schedule_survives_a_restart(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    state = MemoryStateStore()
    first = await connector(tenant, hooks, state=state)
    async with Live(first):
        await until(lambda: fake.subscriptions)
    sub_id = next(iter(fake.subscriptions))
    assert (await state.get("subscriptions"))[tenant.chat]["id"] == sub_id
    again = TeamsConnector(dataclasses.replace(first.ctx, sink=CollectingSink()))  # same state and secrets
    async with Live(again) as live:
        await asyncio.sleep(1)
        fake.post_as(tenant.bob, tenant.chat, "<p>after restart</p>")
        await until(lambda: "after restart" in texts(live), timeout=10)
    assert len(posts(fake, "/subscriptions")) == 1, "the stored subscription was not reused"


async def test_subscription_removed_catches_up_and_subscribes_again(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    c = await connector(tenant, hooks)
    async with Live(c) as live:
        await until(lambda: fake.subscriptions)
        old = next(iter(fake.subscriptions))
        await asyncio.sleep(0.5)
        fake.lifecycle(old, "subscriptionRemoved")  # the fake forgets it: the next post notifies nobody
        fake.post_as(tenant.bob, tenant.chat, "<p>while removed</p>")
        await until(lambda: "while removed" in texts(live), timeout=10)
        await until(lambda: fake.subscriptions and old not in fake.subscriptions)
        fake.post_as(tenant.bob, tenant.chat, "<p>on the new one</p>")
        await until(lambda: "on the new one" in texts(live), timeout=10)
    assert texts(live).count("while removed") == 1


async def test_missed_notifications_are_caught_up(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    c = await connector(tenant, hooks)
    async with Live(c) as live:
        await until(lambda: fake.subscriptions)
        await asyncio.sleep(0.5)
        chat = fake.chats[tenant.chat]
        chat["messages"].append(
            fake.message(tenant.bob, "<p>lost</p>", chatId=tenant.chat)
        )  # no notification
        await asyncio.sleep(0.5)
        assert "lost" not in texts(live)
        fake.lifecycle(next(iter(fake.subscriptions)), "missed")
        await until(lambda: "lost" in texts(live), timeout=10)


async def test_reauthorization_required_renews_at_once(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    c = await connector(tenant, hooks)
    async with Live(c):
        await until(lambda: fake.subscriptions)
        sub_id = next(iter(fake.subscriptions))
        assert posts(fake, f"/subscriptions/{sub_id}", "PATCH") == []
        fake.lifecycle(sub_id, "reauthorizationRequired")
        await until(lambda: posts(fake, f"/subscriptions/{sub_id}", "PATCH"), timeout=10)


async def test_a_notification_without_our_client_state_is_refused(tenant: Any, hooks: HookRegistry) -> None:
    c = await connector(tenant, hooks)
    async with Live(c):
        await until(lambda: tenant.fake.subscriptions)
        url = hooks.for_account("teams", "acct-1").url("graph")
        assert url is not None
        forged = {
            "value": [{"subscriptionId": "x", "clientState": "guess", "resource": f"chats('{tenant.chat}')"}]
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=forged) as resp:
                assert resp.status == 403
            async with http.post(url, params={"validationToken": "a token"}) as resp:
                assert resp.status == 200 and await resp.text() == "a token"
                assert (
                    resp.content_type == "text/plain" and resp.headers["X-Content-Type-Options"] == "nosniff"
                )
            async with http.post(url, params={"validationToken": "x" * 5000}) as resp:
                assert resp.status == 400
    assert c.notes.received == 0


async def test_without_a_https_hook_url_auto_mode_polls(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    result = await tenant.link()  # receive = "auto"; the hook URL is http://127.0.0.1
    c = TeamsConnector(await tenant.context(result, hooks=hooks.for_account("teams", "acct-1")))
    async with Live(c) as live:
        fake.post_as(tenant.bob, tenant.chat, "<p>polled</p>")
        await until(lambda: "polled" in texts(live), timeout=10)
    assert not c.notes.active and posts(fake, "/subscriptions") == []


async def test_a_followed_channel_is_subscribed_and_notified(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake
    team, (chan,) = fake.add_team("Engineering", [tenant.alice, tenant.bob], ["General"])
    c = await connector(tenant, hooks, channels=[f"{team}/{chan}"])
    async with Live(c) as live:
        await until(lambda: len(fake.subscriptions) == 2)
        resources = sorted(s["resource"] for s in fake.subscriptions.values())
        assert resources[1] == f"/teams/{team}/channels/{chan}/messages"
        await asyncio.sleep(0.5)
        root = fake.post_channel_as(tenant.bob, team, chan, "<p>channel news</p>")
        assert root is not None
        await until(lambda: "channel news" in texts(live), timeout=10)
        fake.post_channel_as(tenant.bob, team, chan, "<p>in the thread</p>", reply_to=root["id"])
        await until(lambda: "in the thread" in texts(live), timeout=10)


async def test_a_refused_subscription_leaves_the_chat_polled(tenant: Any, hooks: HookRegistry) -> None:
    fake = tenant.fake

    async def unreachable(url: str) -> bool:  # Graph cannot reach the bridge: the handshake fails
        return False

    fake.validate_endpoint = unreachable
    c = await connector(tenant, hooks, poll_max_s=0.3)
    async with Live(c) as live:
        await until(lambda: tenant.chat in c.notes.refused)
        assert fake.subscriptions == {} and c.next_wait() <= 0.3
        fake.post_as(tenant.bob, tenant.chat, "<p>found by polling</p>")
        await until(lambda: "found by polling" in texts(live), timeout=10)
    assert len(posts(fake, "/subscriptions")) == 1, "a refused subscription is not asked for every round"
