"""The Discord fake on its own, driven by a plain aiohttp client: it refuses what Discord's OpenAPI
description refuses, rate-limits with Discord's headers, and its gateway resumes, refuses resumes, and
closes with 4004 on a revoked token."""

from __future__ import annotations

import asyncio
import sys
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from msgr_bridge.testing.fakes.discord import DiscordFake
from msgr_bridge.testing.fakes.discord_gateway import CLOSE_AUTH_FAILED

INTENTS = (1 << 0) | (1 << 9) | (1 << 15)


@pytest.fixture
async def fake() -> AsyncIterator[DiscordFake]:
    async with DiscordFake() as f:
        yield f


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def seed(fake: DiscordFake) -> tuple[str, str, str]:
    """(token, bob's id, channel id)."""
    bot, token = fake.add_bot("bot")
    bob = fake.add_user("bob")
    guild = fake.add_guild("g", [bot["id"], bob["id"]])
    return token, bob["id"], fake.add_channel(guild["id"], "general")["id"]


async def call(
    http: aiohttp.ClientSession, fake: DiscordFake, method: str, path: str, token: str | None, **kw: Any
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bot {token}"} if token else {}
    async with http.request(method, fake.api_url + path, headers=headers, **kw) as r:
        raw = await r.read()
        assert r.status == 204 or r.headers["Content-Type"] == "application/json"
        return r.status, orjson.loads(raw) if raw else None, r.headers


async def test_requests_are_checked_against_the_openapi_description(
    fake: DiscordFake, http: aiohttp.ClientSession
) -> None:
    token, _, cid = seed(fake)
    status, body, _ = await call(
        http, fake, "POST", f"/channels/{cid}/messages", token, json={"content": "hi"}
    )
    assert status == 200 and body["content"] == "hi"
    status, body, _ = await call(
        http, fake, "POST", f"/channels/{cid}/messages", token, json={"contnet": "x"}
    )
    assert status == 400 and body["code"] == 50035 and body["errors"] == ["contnet: unknown field"]
    status, body, _ = await call(
        http, fake, "POST", f"/channels/{cid}/messages", token, json={"content": "x", "message_reference": {}}
    )
    assert status == 400 and any(e.startswith("message_reference:") for e in body["errors"]), body
    status, body, _ = await call(http, fake, "GET", f"/channels/{cid}/messages?limit=500", token)
    assert status == 400 and any(e.startswith("limit:") for e in body["errors"])
    status, body, _ = await call(http, fake, "GET", f"/channels/{cid}/messages?since=1", token)
    assert status == 400 and body["errors"] == ["since: unknown query parameter"]
    status, body, _ = await call(http, fake, "GET", "/channels/not-a-snowflake/messages", token)
    assert status == 400
    status, _, _ = await call(http, fake, "GET", "/guilds/1/audit-logs", token)
    assert status == 404
    status, _, _ = await call(http, fake, "PUT", f"/channels/{cid}/messages", token)
    assert status == 405
    assert [r.status for r in fake.rest.requests] == [200, 400, 400, 400, 400, 400, 404, 405]


async def test_history_pages_newest_first_with_before_and_after(
    fake: DiscordFake, http: aiohttp.ClientSession
) -> None:
    token, bob, cid = seed(fake)
    ids = [fake.post(cid, bob, f"m{i}")["id"] for i in range(5)]
    _, page, _ = await call(http, fake, "GET", f"/channels/{cid}/messages?limit=2", token)
    assert [m["id"] for m in page] == [ids[4], ids[3]]
    _, page, _ = await call(http, fake, "GET", f"/channels/{cid}/messages?limit=2&before={ids[3]}", token)
    assert [m["id"] for m in page] == [ids[2], ids[1]]
    _, page, _ = await call(http, fake, "GET", f"/channels/{cid}/messages?limit=2&after={ids[0]}", token)
    assert [m["id"] for m in page] == [ids[2], ids[1]]


async def test_rate_limit_headers_bucket_exhaustion_and_injected_global(
    fake: DiscordFake, http: aiohttp.ClientSession
) -> None:
    token, _, cid = seed(fake)
    fake.rest.limits.per_route["/channels/{channel_id}/messages"] = (2, 5.0)
    path = f"/channels/{cid}/messages"
    statuses = []
    for _ in range(3):
        status, body, headers = await call(http, fake, "POST", path, token, json={"content": "x"})
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert body["global"] is False and 0 < body["retry_after"] <= 5.0
    assert headers["X-RateLimit-Limit"] == "2" and headers["X-RateLimit-Remaining"] == "0"
    assert float(headers["X-RateLimit-Reset-After"]) > 0 and headers["X-RateLimit-Bucket"]
    assert "X-RateLimit-Global" not in headers and int(headers["Retry-After"]) >= 1
    fake.rest.inject_429(retry_after=2.5, is_global=True)
    status, body, headers = await call(http, fake, "GET", "/users/@me", token)
    assert status == 429 and body == {
        "message": "You are being rate limited.",
        "retry_after": 2.5,
        "global": True,
    }
    assert headers["X-RateLimit-Global"] == "true"
    status, _, _ = await call(http, fake, "GET", "/users/@me", token)
    assert status == 200


async def test_webhook_execute_with_wait_and_multipart_files(
    fake: DiscordFake, http: aiohttp.ClientSession
) -> None:
    token, _, cid = seed(fake)
    _, hook, _ = await call(http, fake, "POST", f"/channels/{cid}/webhooks", token, json={"name": "relay"})
    path = f"/webhooks/{hook['id']}/{hook['token']}?wait=true"
    status, msg, _ = await call(
        http, fake, "POST", path, None, json={"content": "as alice", "username": "Alice"}
    )
    assert status == 200 and msg["webhook_id"] == hook["id"] and msg["author"]["username"] == "Alice"
    status, _, _ = await call(
        http, fake, "POST", f"/webhooks/{hook['id']}/wrong-token", None, json={"content": "x"}
    )
    assert status == 401
    form = aiohttp.FormData()
    form.add_field(
        "payload_json", orjson.dumps({"content": "a file"}).decode(), content_type="application/json"
    )
    form.add_field("files[0]", b"hello", filename="a.txt")
    status, msg, _ = await call(http, fake, "POST", f"/channels/{cid}/messages", token, data=form)
    assert status == 200 and msg["attachments"][0]["filename"] == "a.txt"
    async with http.get(msg["attachments"][0]["url"]) as r:
        assert await r.read() == b"hello"


class Gw:
    """A minimal gateway client for the fake's own tests."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compressed: bool) -> None:
        self.ws, self.inflate = ws, zlib.decompressobj() if compressed else None

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=10)
        if msg.type == aiohttp.WSMsgType.BINARY:
            assert self.inflate is not None and msg.data.endswith(b"\x00\x00\xff\xff")
            return dict(orjson.loads(self.inflate.decompress(msg.data)))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return dict(orjson.loads(msg.data))

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(orjson.dumps({"op": op, "d": d}).decode())

    async def dispatch(self, name: str) -> dict[str, Any]:
        while (frame := await self.recv()).get("t") != name:
            pass
        return frame


async def open_gw(http: aiohttp.ClientSession, fake: DiscordFake, compress: bool = False) -> Gw:
    suffix = "&compress=zlib-stream" if compress else ""
    gw = Gw(await http.ws_connect(f"{fake.gateway_url}?v=10&encoding=json{suffix}"), compress)
    assert (await gw.recv())["op"] == 10
    return gw


async def test_resume_replays_missed_dispatches_and_refusal_forces_identify(
    fake: DiscordFake, http: aiohttp.ClientSession
) -> None:
    token, bob, cid = seed(fake)
    gw = await open_gw(http, fake, compress=True)
    await gw.send(2, {"token": token, "intents": INTENTS, "properties": {}})
    ready = await gw.dispatch("READY")
    created = await gw.dispatch("GUILD_CREATE")
    await gw.send(1, created["s"])
    assert (await gw.recv())["op"] == 11
    await gw.ws.close(code=4000)  # not 1000: the session stays resumable
    fake.post(cid, bob, "missed 1")
    fake.post(cid, bob, "missed 2")
    gw = await open_gw(http, fake)
    await gw.send(6, {"token": token, "session_id": ready["d"]["session_id"], "seq": created["s"]})
    replayed = [await gw.recv() for _ in range(3)]
    assert [f.get("t") for f in replayed] == ["MESSAGE_CREATE", "MESSAGE_CREATE", "RESUMED"]
    assert [f["s"] for f in replayed] == [created["s"] + 1, created["s"] + 2, created["s"] + 3]
    assert [f["d"]["content"] for f in replayed[:2]] == ["missed 1", "missed 2"]
    await gw.ws.close(code=1000)  # a clean close ends the session
    gw = await open_gw(http, fake)
    await gw.send(6, {"token": token, "session_id": ready["d"]["session_id"], "seq": replayed[-1]["s"]})
    assert await gw.recv() == {"op": 9, "d": False}
    await gw.send(2, {"token": token, "intents": INTENTS, "properties": {}})
    assert (await gw.dispatch("READY"))["d"]["session_id"] != ready["d"]["session_id"]
    await gw.ws.close()


async def test_revoked_token_gets_401_and_gateway_close_4004(
    fake: DiscordFake, http: aiohttp.ClientSession
) -> None:
    token, _, _ = seed(fake)
    gw = await open_gw(http, fake)
    await gw.send(2, {"token": token, "intents": INTENTS, "properties": {}})
    await gw.dispatch("READY")
    await fake.revoke(token)
    while (msg := await gw.ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
        pass  # GUILD_CREATE was still on its way
    assert msg.type == aiohttp.WSMsgType.CLOSE and gw.ws.close_code == CLOSE_AUTH_FAILED
    status, body, _ = await call(http, fake, "GET", "/users/@me", token)
    assert status == 401 and body["message"] == "401: Unauthorized"
    gw = await open_gw(http, fake)
    await gw.send(2, {"token": token, "intents": INTENTS, "properties": {}})
    await gw.ws.receive(timeout=10)
    assert gw.ws.close_code == CLOSE_AUTH_FAILED


async def test_message_content_is_withheld_without_the_intent(
    fake: DiscordFake, http: aiohttp.ClientSession
) -> None:
    token, bob, cid = seed(fake)
    gw = await open_gw(http, fake)
    await gw.send(2, {"token": token, "intents": INTENTS & ~(1 << 15), "properties": {}})
    await gw.dispatch("GUILD_CREATE")
    fake.post(cid, bob, "secret")
    assert (await gw.dispatch("MESSAGE_CREATE"))["d"]["content"] == ""
    await gw.ws.close()


async def test_runs_standalone_and_serves_the_token_it_prints(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "msgr_bridge.testing.fakes.discord",
        "--port",
        "0",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        lines: dict[str, str] = {}
        async with asyncio.timeout(30):
            while "bot token" not in lines:
                key, _, value = (await proc.stdout.readline()).decode().partition("=")
                lines[key.strip()] = value.strip()
        async with http.get(
            lines["api_base"] + "/users/@me", headers={"Authorization": f"Bot {lines['bot token']}"}
        ) as r:
            assert r.status == 200 and (await r.json())["username"] == "bridge-bot"
    finally:
        proc.stdin.close()  # end of input stops it
        async with asyncio.timeout(30):
            assert await proc.wait() == 0


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (["not json"], 4002),
        ([{"op": 42, "d": None}], 4001),
        ([{"op": 2, "d": "not an object"}], CLOSE_AUTH_FAILED),
        (["IDENTIFY", "IDENTIFY"], 4005),
    ],
)
async def test_protocol_errors_close_with_discords_codes(
    fake: DiscordFake, http: aiohttp.ClientSession, frames: list[Any], code: int
) -> None:
    token, _, _ = seed(fake)
    gw = await open_gw(http, fake)
    for frame in frames:
        if frame == "IDENTIFY":
            await gw.send(2, {"token": token, "intents": INTENTS, "properties": {}})
        elif isinstance(frame, str):
            await gw.ws.send_str(frame)
        else:
            await gw.send(frame["op"], frame["d"])
    while (await gw.ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
        pass  # READY and GUILD_CREATE of the first IDENTIFY
    assert gw.ws.close_code == code
