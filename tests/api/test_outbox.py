"""The outbox through the API: scheduled sends (send_at) listed, changed and cancelled; a cancel says
``cancelled`` on the event stream as in the outbox; retry; scopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.testing.waiting import wait_until

from .conftest import Api, Start

CONV = "/v1/accounts/{a}/conversations/g"


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def _statuses(ws: aiohttp.ClientWebSocketResponse, outbox_id: str, until: str) -> list[str]:
    seen: list[str] = []
    while until not in seen:
        frame = json.loads((await ws.receive(timeout=10)).data)
        for e in frame.get("events", []):
            event = e["event"]
            if event.get("kind") == "delivery_status" and event["outbox_id"] == outbox_id:
                seen.append(event["state"])
    return seen


async def _state(api: Api, outbox_id: str) -> Any:
    _, body = await api.call("GET", f"/v1/outbox/{outbox_id}")
    return body["state"]


async def test_a_cancelled_send_says_cancelled_on_the_stream_and_in_the_outbox(
    start: Start, net: LoopbackNetwork
) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        ws_url = api.base.replace("http", "ws") + "/v1/events"
        async with api.http.ws_connect(ws_url, headers=api.h()) as ws:
            status, entry = await api.call(
                "POST",
                CONV.format(a=a) + "/messages",
                json={"text": "later", "send_at": _at(timedelta(hours=1))},
            )
            assert status == 202 and entry["state"] == "scheduled", entry
            status, cancelled = await api.call("DELETE", f"/v1/outbox/{entry['outbox_id']}")
            assert status == 200 and cancelled["state"] == "cancelled"
            seen = await _statuses(ws, entry["outbox_id"], "cancelled")
        assert seen == ["scheduled", "cancelled"]
        assert await _state(api, entry["outbox_id"]) == seen[-1]
        status, again = await api.call("DELETE", f"/v1/outbox/{entry['outbox_id']}")
        assert (status, again["code"]) == (409, "outbox_state")


async def test_scheduled_sends_are_listed_changed_and_go_out(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        conv = CONV.format(a=a)
        _, far = await api.call(
            "POST", conv + "/messages", json={"text": "far", "send_at": _at(timedelta(days=2))}
        )
        _, near = await api.call(
            "POST", conv + "/messages", json={"text": "near", "send_at": _at(timedelta(days=1))}
        )
        status, listed = await api.call("GET", "/v1/outbox?state=scheduled")
        assert status == 200
        assert [(e["outbox_id"], e["text"]) for e in listed["entries"]] == [
            (near["outbox_id"], "near"),
            (far["outbox_id"], "far"),
        ]
        assert listed["entries"][0]["send_at"] and listed["entries"][0]["conversation_path_id"] == "g"

        status, changed = await api.call(
            "PATCH",
            f"/v1/outbox/{far['outbox_id']}",
            json={"text": "soon", "send_at": _at(timedelta(seconds=1))},
        )
        assert status == 200 and changed["text"] == "soon" and changed["state"] == "scheduled", changed

        async def sent() -> bool:
            return await _state(api, far["outbox_id"]) == "sent"

        await wait_until(sent, timeout=15)
        assert [m["text"] for m in net.messages.values() if m["text"] == "soon"] == ["soon"]
        status, late = await api.call("PATCH", f"/v1/outbox/{far['outbox_id']}", json={"text": "too late"})
        assert (status, late["code"]) == (409, "not_scheduled")
        assert await _state(api, near["outbox_id"]) == "scheduled"


async def test_send_at_is_checked(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        conv = CONV.format(a=a)
        for send_at, why in (
            (_at(timedelta(minutes=-1)), "not in the future"),
            (_at(timedelta(days=400)), "days ahead"),
        ):
            status, body = await api.call("POST", conv + "/messages", json={"text": "x", "send_at": send_at})
            assert status == 422 and why in body["detail"], body
        status, body = await api.call(
            "POST", conv + "/messages", json={"text": "x", "send_at": "2030-01-01T09:00"}
        )
        assert status == 422 and body["errors"][0]["field"] == "send_at", body  # no offset: ambiguous
        status, body = await api.call("PATCH", "/v1/outbox/ob_missing", json={"text": "x"})
        assert (status, body["code"]) == (404, "outbox_entry_not_found")
        status, body = await api.call("GET", "/v1/outbox?state=later")
        assert status == 422 and body["errors"][0]["field"] == "state"


async def test_outbox_routes_need_their_scopes(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        _, entry = await api.call(
            "POST", CONV.format(a=a) + "/messages", json={"text": "x", "send_at": _at(timedelta(hours=1))}
        )
        one = f"/v1/outbox/{entry['outbox_id']}"
        reader = await api.token(f"read:{a}")
        _, listed = await api.call("GET", "/v1/outbox", token=reader)
        assert [e["outbox_id"] for e in listed["entries"]] == [entry["outbox_id"]]
        other = await api.token("read:acct-none")
        _, listed = await api.call("GET", "/v1/outbox", token=other)
        assert listed["entries"] == []
        status, body = await api.call("DELETE", one, token=reader)
        assert (status, body["code"]) == (403, "scope_missing")
        status, body = await api.call("POST", one + "/retry", token=await api.token(f"send:{a}"))
        assert (status, body["code"]) == (403, "scope_missing")
        status, body = await api.call("DELETE", one, token=await api.token(f"send:{a}"))
        assert status == 200 and body["state"] == "cancelled"
        status, body = await api.call("POST", one + "/retry")
        assert status == 200 and body["state"] == "queued"
