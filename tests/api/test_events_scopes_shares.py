"""The event stream (WebSocket and SSE, resume without gap or duplicate), the scope matrix, share links."""

from __future__ import annotations

import json

import aiohttp
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.testing.waiting import wait_until

from .conftest import Start


async def _collect(ws: aiohttp.ClientWebSocketResponse, seqs: list[int], until: int) -> int:
    last = 0
    while len(seqs) < until:
        frame = json.loads((await ws.receive()).data)
        if frame["type"] == "events":
            for e in frame["events"]:
                if e["seq"] is not None:
                    seqs.append(e["seq"])
                    last = e["seq"]
    return last


async def test_stream_resumes_without_gap_or_duplicate(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        await api.link("alice", "pw-alice")
        token = await api.token("read:*")
        url = api.base.replace("http", "ws") + "/v1/events?cursor=0"
        seqs: list[int] = []
        async with api.http.ws_connect(url, headers=api.h(token)) as ws:
            for i in range(5):
                net.post("g", "bob", f"one {i}")
            last = await _collect(ws, seqs, 5)
        for i in range(5):  # while disconnected
            net.post("g", "bob", f"two {i}")
        async with api.http.ws_connect(url.replace("cursor=0", f"cursor={last}"), headers=api.h(token)) as ws:
            for i in range(5):
                net.post("g", "bob", f"three {i}")
            await _collect(ws, seqs, 15)
        assert seqs == sorted(set(seqs)) and len(seqs) == 15
        assert seqs == list(range(seqs[0], seqs[0] + 15)) or len(set(seqs)) == 15

        # SSE fallback replays the same log from a cursor
        async with api.http.get(api.base + f"/v1/events?cursor={seqs[9]}", headers=api.h(token)) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            got: list[int] = []
            async for line in r.content:
                if line.startswith(b"id: "):
                    got.append(int(line[4:]))
                if len(got) == 5:
                    break
        assert got == seqs[10:15]


async def test_a_client_after_an_idle_spell_gets_only_what_follows_its_cursor(
    start: Start, net: LoopbackNetwork
) -> None:
    """With nobody connected the hub reads nothing; the first client after that gets the rows after its
    cursor, and the hub does not read or fan out the rows of the idle spell."""
    async with start() as api:
        await api.link("alice", "pw-alice")
        assert api.bridge.api is not None
        hub = api.bridge.api.hub
        for i in range(30):
            net.post("g", "bob", f"unwatched {i}")
        await wait_until(lambda: api.bridge.pipeline is not None and api.bridge.pipeline.stats.created >= 30)
        token = await api.token("read:*")
        url = api.base.replace("http", "ws") + "/v1/events"
        async with api.http.ws_connect(url, headers=api.h(token)) as ws:
            await wait_until(lambda: len(hub.clients) == 1)
            posted = net.post("g", "bob", "watched")
            frame = json.loads((await ws.receive()).data)
            while frame["type"] != "events":
                frame = json.loads((await ws.receive()).data)
            assert [e["event"]["remote_id"] for e in frame["events"]] == [posted["id"]]
            assert hub.delivered == 1


async def test_scope_matrix(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        conv = f"/v1/accounts/{a}/conversations/g"
        m1 = net.post("g", "bob", "a message to edit, delete and react to")["id"]
        await wait_until(lambda: api.bridge.pipeline is not None and api.bridge.pipeline.stats.created >= 1)
        calls = {
            "read": ("GET", conv + "/messages", None),
            "send": ("POST", conv + "/messages", {"text": "x"}),
            "edit": ("PATCH", conv + f"/messages/{m1}", {"text": "y"}),
            "delete": ("DELETE", conv + f"/messages/{m1}", None),
            "react": ("POST", conv + f"/messages/{m1}/reactions", {"emoji": "+"}),
            "admin": ("POST", "/v1/links", {"network": "loopback", "settings": {"network": "api"}}),
        }
        for scope in calls:
            token = await api.token(f"{scope}:{a}" if scope != "admin" else "admin:*")
            for action, (method, path, body) in calls.items():
                status, problem = await api.call(method, path, token, json=body)
                allowed = action == scope or scope == "admin"
                assert (status < 400) == allowed, (scope, action, status, problem)
                if not allowed:
                    assert status == 403 and problem["code"] == "scope_missing"
        other = await api.token("read:acct_other")
        status, body = await api.call("GET", conv + "/messages", other)
        assert status == 403
        status, body = await api.call("GET", "/v1/accounts", other)
        assert body["accounts"] == []
        for bad in ("nope", "mb_unknown"):
            status, body = await api.call("GET", "/v1/accounts", bad)
            assert status == 401 and body["code"] == "token_unknown"
        async with api.http.get(api.base + "/v1/accounts") as r:
            assert r.status == 401 and (await r.json())["code"] == "token_missing"

        async def idle() -> bool:
            _, p = await api.call("GET", conv + "/messages")
            return len(p["messages"]) >= 2

        await wait_until(idle)


async def test_share_links(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        status, link = await api.call(
            "POST",
            "/v1/share-links",
            json={"kind": "location", "target": {"lat": 1.5, "lon": 2.5}, "max_views": 2},
        )
        assert status == 201 and link["deep_link"].startswith("msgr://share/")
        token = link["token"]
        public = f"/s/{token}"
        async with api.http.get(api.base + public) as r:
            assert r.status == 200 and (await r.json())["target"]["lat"] == 1.5
        async with api.http.get(api.base + public) as r:
            assert r.status == 200
        async with api.http.get(api.base + public) as r:
            assert r.status == 410 and (await r.json())["code"] == "share_link_exhausted"
        async with api.http.get(api.base + public[:-3] + "xyz") as r:
            assert r.status == 404
        # A token with non-ASCII characters (a mangled paste; found by schemathesis) is just not found.
        for tail in ("", "/content"):
            async with api.http.get(api.base + "/s/%F0%BB%8A%AB%C2%AF.%C3%86%3Ax" + tail) as r:
                assert r.status == 404 and (await r.json())["code"] == "share_link_not_found"

        form = aiohttp.FormData()
        form.add_field("options", '{"kind": "media", "max_views": 5}')
        form.add_field("file", b"\x89PNG" + b"0" * 3000, filename="p.png", content_type="image/png")
        status, media = await api.call("POST", "/v1/share-links", data=form)
        assert status == 201, media
        async with api.http.get(media["url"].replace("http://127.0.0.1:0", api.base) + "/content") as r:
            assert (
                r.status == 200 and (await r.read()).startswith(b"\x89PNG") and r.content_type == "image/png"
            )
        status, listed = await api.call("GET", "/v1/share-links")
        assert {li["id"] for li in listed["share_links"]} == {link["id"], media["id"]}
        status, revoked = await api.call("DELETE", f"/v1/share-links/{media['id']}")
        assert revoked["revoked"] is True
        async with api.http.get(api.base + f"/s/{media['token']}/content") as r:
            assert r.status == 410 and (await r.json())["code"] == "share_link_revoked"
        status, body = await api.call("POST", "/v1/share-links", json={"kind": "file"})
        assert status == 422 and body["errors"][0]["field"] == "kind"
