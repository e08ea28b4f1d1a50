"""The fake Slack answers slack_sdk over real sockets as Slack does, refuses what Slack's description does
not allow, and injects Slack's faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from msgr_bridge.testing.fakes.slack import FakeSlack

slack_sdk = pytest.importorskip("slack_sdk")
from slack_sdk.errors import SlackApiError  # noqa: E402
from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


def client(fake: FakeSlack, token: str, **kw: Any) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.base_url, **kw)


async def error_of(call: Any) -> tuple[str, int, Any]:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value.response["error"], caught.value.response.status_code, caught.value.response.headers


async def test_authentication(fake: FakeSlack) -> None:
    ws = fake.workspace
    me = ws.add_user("me")
    user, session = ws.issue_token(me.id), ws.issue_token(me.id, "session")
    assert (await client(fake, user.value).auth_test())["user_id"] == me.id
    assert (await error_of(client(fake, "xoxp-nope").auth_test()))[0] == "invalid_auth"
    assert (await error_of(AsyncWebClient(base_url=fake.base_url).auth_test()))[0] == "not_authed"
    # a session token without its d cookie is refused; with it, it works
    assert (await error_of(client(fake, session.value).auth_test()))[0] == "invalid_auth"
    with_cookie = client(fake, session.value, headers={"Cookie": f"d={session.cookie}"})
    assert (await with_cookie.auth_test())["user_id"] == me.id
    fake.revoke(user.value, "account_inactive")
    assert (await error_of(client(fake, user.value).auth_test()))[0] == "account_inactive"
    assert fake.violations == []


async def test_unknown_method_and_argument_are_refused_and_recorded(fake: FakeSlack) -> None:
    me = fake.workspace.add_user("me")
    web = client(fake, fake.workspace.issue_token(me.id).value)
    assert (await error_of(web.api_call("chat.postMessagez", json={"channel": "C1"})))[0] == "unknown_method"
    chan = fake.workspace.create_channel("general", [me.id])
    refused = web.api_call("chat.postMessage", json={"channel": chan.id, "text": "x", "colour": "red"})
    assert (await error_of(refused))[0] == "invalid_arg_name"
    assert (await error_of(web.api_call("reactions.add", data={"name": "x"})))[0] == "invalid_arguments"
    assert fake.violations == [
        "unknown method chat.postMessagez",
        "chat.postMessage has no argument colour",
        "reactions.add needs channel, timestamp",
    ]


async def test_messages_threads_reactions_history(fake: FakeSlack) -> None:
    ws = fake.workspace
    me, bob = ws.add_user("me"), ws.add_user("bob")
    chan = ws.create_channel("general", [me.id, bob.id])
    web = client(fake, ws.issue_token(me.id).value)
    root = await web.chat_postMessage(channel=chan.id, text="root")
    reply = await web.chat_postMessage(channel=chan.id, text="in thread", thread_ts=root["ts"])
    assert reply["message"]["thread_ts"] == root["ts"]
    await web.chat_update(channel=chan.id, ts=root["ts"], text="root (edited)")
    await web.reactions_add(channel=chan.id, timestamp=root["ts"], name="thumbsup")
    assert (await error_of(web.reactions_add(channel=chan.id, timestamp=root["ts"], name="thumbsup")))[0] == (
        "already_reacted"
    )
    history = await web.conversations_history(channel=chan.id)
    (top,) = history["messages"]  # the reply stays in its thread
    assert top["text"] == "root (edited)" and top["reply_count"] == 1 and top["reactions"][0]["count"] == 1
    thread = await web.conversations_replies(channel=chan.id, ts=root["ts"])
    assert [m["text"] for m in thread["messages"]] == ["root (edited)", "in thread"]
    await web.chat_delete(channel=chan.id, ts=reply["ts"])
    missing = web.chat_delete(channel=chan.id, ts=reply["ts"])
    assert (await error_of(missing))[0] == "message_not_found"
    assert (await error_of(web.chat_postMessage(channel="C0NOPE", text="x")))[0] == "channel_not_found"
    bobs = ws.post(chan.id, bob.id, "bob's")
    assert (await error_of(web.chat_update(channel=chan.id, ts=bobs.ts, text="x")))[
        0
    ] == "cant_update_message"
    await web.conversations_mark(channel=chan.id, ts=bobs.ts)
    assert chan.last_read[me.id] == bobs.ts
    assert fake.violations == []


async def test_history_pages_and_non_marketplace_cap(fake: FakeSlack) -> None:
    ws = fake.workspace
    me = ws.add_user("me")
    chan = ws.create_channel("general", [me.id])
    for i in range(40):
        ws.post(chan.id, me.id, f"m{i}")
    web = client(fake, ws.issue_token(me.id).value)
    first = await web.conversations_history(channel=chan.id, limit=30)
    assert len(first["messages"]) == 30 and first["has_more"]
    rest = await web.conversations_history(
        channel=chan.id, limit=30, cursor=first["response_metadata"]["next_cursor"]
    )
    assert len(rest["messages"]) == 10 and rest["response_metadata"]["next_cursor"] == ""
    fake.non_marketplace = True
    assert len((await web.conversations_history(channel=chan.id, limit=100))["messages"]) == 15


async def test_rate_limits(fake: FakeSlack) -> None:
    me = fake.workspace.add_user("me")
    web = client(fake, fake.workspace.issue_token(me.id).value)
    fake.fail("auth.test", "ratelimited", retry_after=7)
    error, status, headers = await error_of(web.auth_test())
    assert (error, status, headers["Retry-After"]) == ("ratelimited", 429, "7")
    await web.auth_test()  # the fault was for one call
    fake.enable_rate_limits(auth_test=(2, 60.0))
    await web.auth_test()
    await web.auth_test()
    error, status, headers = await error_of(web.auth_test())
    assert status == 429 and int(headers["Retry-After"]) >= 59


async def test_upload_flow(fake: FakeSlack) -> None:
    ws = fake.workspace
    me = ws.add_user("me")
    chan = ws.create_channel("general", [me.id])
    token = ws.issue_token(me.id).value
    done = await client(fake, token).files_upload_v2(
        channel=chan.id, content=b"hello file", filename="a.txt", title="A"
    )
    file_id = done["files"][0]["id"]
    assert ws.files[file_id].content == b"hello file"
    (msg,) = chan.messages.values()
    assert msg.subtype == "file_share" and msg.files == [file_id]
    url = ws.message_api(msg)["files"][0]["url_private"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 200 and await r.read() == b"hello file"
    assert fake.violations == []


async def test_socket_mode_envelopes_acks_and_disconnect(fake: FakeSlack) -> None:
    ws = fake.workspace
    me, bob = ws.add_user("me"), ws.add_user("bob")
    chan = ws.create_channel("general", [me.id, bob.id])
    app = ws.issue_token(me.id, "app").value
    assert (
        await error_of(
            AsyncWebClient(base_url=fake.base_url).apps_connections_open(
                app_token=ws.issue_token(me.id).value
            )
        )
    )[0] == ("not_allowed_token_type")
    url = (await AsyncWebClient(base_url=fake.base_url).apps_connections_open(app_token=app))["url"]
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as sock:
        assert json.loads((await sock.receive()).data)["type"] == "hello"
        ws.post(chan.id, bob.id, "hi")
        envelope = json.loads((await sock.receive(timeout=5)).data)
        assert envelope["type"] == "events_api"
        assert envelope["payload"]["event"]["text"] == "hi"
        await sock.send_json({"envelope_id": envelope["envelope_id"]})
        await fake.send_disconnect(grace_s=0.05)
        assert json.loads((await sock.receive(timeout=5)).data)["type"] == "disconnect"
        assert (await sock.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert fake.acks == [envelope["envelope_id"]]


async def test_socket_mode_redelivers_unacknowledged(fake: FakeSlack) -> None:
    ws = fake.workspace
    me, bob = ws.add_user("me"), ws.add_user("bob")
    chan = ws.create_channel("general", [me.id, bob.id])
    fake.ack_timeout = 0.1
    url = (
        await AsyncWebClient(base_url=fake.base_url).apps_connections_open(
            app_token=ws.issue_token(me.id, "app").value
        )
    )["url"]
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as sock:
        await sock.receive()
        ws.post(chan.id, bob.id, "hi")
        first = json.loads((await sock.receive(timeout=5)).data)
        again = json.loads((await sock.receive(timeout=5)).data)
        assert again["envelope_id"] == first["envelope_id"] and again["retry_attempt"] == 1


async def test_rtm_for_session_tokens(fake: FakeSlack) -> None:
    ws = fake.workspace
    me, bob = ws.add_user("me"), ws.add_user("bob")
    chan = ws.create_channel("general", [me.id, bob.id])
    user = ws.issue_token(me.id).value
    assert (await error_of(client(fake, user).rtm_connect()))[0] == "not_allowed_token_type"
    session = ws.issue_token(me.id, "session")
    web = client(fake, session.value, headers={"Cookie": f"d={session.cookie}"})
    url = (await web.rtm_connect())["url"]
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as sock:
        assert json.loads((await sock.receive()).data) == {"type": "hello"}
        await sock.send_json({"id": 1, "type": "ping"})
        assert json.loads((await sock.receive(timeout=5)).data) == {"type": "pong", "reply_to": 1}
        await web.conversations_mark(channel=chan.id, ts=ws.post(chan.id, bob.id, "x").ts)
        frames = [json.loads((await sock.receive(timeout=5)).data) for _ in range(2)]
        assert [f["type"] for f in frames] == ["message", "channel_marked"]
        fake.deafen()
        await sock.send_json({"id": 2, "type": "ping"})
        with pytest.raises(asyncio.TimeoutError):
            await sock.receive(timeout=0.3)


def test_records_stay_bounded() -> None:
    from msgr_bridge.testing.fakes.slack.entities import bounded, bounded_put

    items: list[int] = []
    for i in range(25):
        bounded(items, i, limit=10)
    assert len(items) <= 10 and items[-1] == 24
    tickets: dict[int, int] = {}
    for i in range(25):
        bounded_put(tickets, i, i, limit=10)
    assert len(tickets) == 10 and 24 in tickets and 0 not in tickets
