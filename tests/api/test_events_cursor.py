"""The event stream's cursor cannot disturb other clients (issue #10, item 1)."""

from __future__ import annotations

import json

import aiohttp
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.testing.waiting import wait_until

from .conftest import Start


async def _next_events(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, object]]:
    while True:
        frame = json.loads((await ws.receive(timeout=10)).data)
        if frame["type"] == "events":
            return list(frame["events"])


async def test_a_cursor_past_the_head_is_refused_and_moves_no_mark(
    start: Start, net: LoopbackNetwork
) -> None:
    async with start() as api:
        await api.link("alice", "pw-alice")
        assert api.bridge.api is not None
        hub = api.bridge.api.hub
        net.post("g", "bob", "before")
        await wait_until(lambda: api.bridge.pipeline is not None and api.bridge.pipeline.stats.created >= 1)
        await wait_until(lambda: hub._idle_since_mark)  # the hub was woken with nobody connected: idle
        token = await api.token("read:*")
        ws_url = api.base.replace("http", "ws") + "/v1/events"
        with_cursor = ws_url + f"?cursor={10**12}"
        hostile_status = 101
        try:  # whatever the answer, it must not change what the next client receives
            async with api.http.ws_connect(with_cursor, headers=api.h(token)):
                pass
        except aiohttp.WSServerHandshakeError as exc:
            hostile_status = exc.status
        async with api.http.ws_connect(ws_url, headers=api.h(token)) as ws:
            await wait_until(lambda: len(hub.clients) == 1)
            posted = net.post("g", "bob", "live")
            events = await _next_events(ws)
            assert [e["event"]["remote_id"] for e in events] == [posted["id"]]  # type: ignore[index]
        assert hostile_status == 400
        async with api.http.get(with_cursor, headers=api.h(token)) as r:  # SSE
            assert r.status == 400 and (await r.json())["code"] == "cursor_ahead"
        assert hub.high_water < 10**12
