"""Import progress through the running bridge: what a connector reports on its real ``ctx.progress`` reaches
the event stream (a live ``sync_progress`` frame, only for tokens that may read the account), the account's
``sync`` field, and is still shown after a restart."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anyio
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.testing.waiting import wait_until

from .conftest import Start


async def _next_progress(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            frame = json.loads((await ws.receive()).data)
            for e in frame.get("events", ()):
                if e["kind"] == "sync_progress":
                    return dict(e)


async def test_progress_reaches_the_stream_and_the_account(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        alice = await api.link("alice", "pw-alice")
        bob = await api.link("bob", "pw-bob")
        connector = api.bridge.supervisor.connector(alice)
        assert connector is not None
        hub = api.bridge.api.hub if api.bridge.api is not None else None
        assert hub is not None
        url = api.base.replace("http", "ws") + "/v1/events"
        async with (
            api.http.ws_connect(url, headers=api.h(await api.token("read:*"))) as ws,
            api.http.ws_connect(url, headers=api.h(await api.token(f"read:{bob}"))) as bob_ws,
        ):
            await wait_until(lambda: len(hub.clients) == 2)
            connector.ctx.progress.report("g", done=15, total=40, phase="history")
            frame = await _next_progress(ws)
            assert frame["seq"] is None and frame["account_id"] == alice and frame["conversation_id"] == "g"
            assert frame["event"] | {"timestamp": None} == {
                "kind": "sync_progress",
                "schema_version": 1,
                "network": "loopback",
                "account_id": alice,
                "conversation_id": "g",
                "phase": "history",
                "done": 15,
                "total": 40,
                "finished": False,
                "timestamp": None,
            }
            connector.ctx.progress.report("g", done=40, total=40, finished=True)
            assert (await _next_progress(ws))["event"]["finished"] is True  # at once, within the second
            with anyio.move_on_after(0.5):  # bob's token may not read alice's account
                frame = json.loads((await bob_ws.receive()).data)
                assert "sync_progress" not in json.dumps(frame)

        status, body = await api.call("GET", f"/v1/accounts/{alice}")
        assert status == 200
        assert body["sync"]["in_progress"] == 0
        [conv] = body["sync"]["conversations"]
        assert (conv["conversation_id"], conv["done"], conv["total"], conv["finished"]) == ("g", 40, 40, True)
        status, body = await api.call("GET", f"/v1/accounts/{bob}")
        assert body["sync"] == {"conversations": [], "in_progress": 0}

    async with start() as api:  # after a restart: loaded back from the store
        status, body = await api.call("GET", f"/v1/accounts/{alice}")
        assert [(c["done"], c["finished"]) for c in body["sync"]["conversations"]] == [(40, True)]
