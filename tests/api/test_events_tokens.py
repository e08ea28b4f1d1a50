"""A stream lives only as long as its token may read: revoked or expired tokens end their WebSocket and SSE
streams (issue #10, item 14): at once when revoked through this process's API or signed out, at the
expiry, and within ``TOKEN_RECHECK_S`` when revoked elsewhere (the command line). Issue 19: the timer was
an idle bridge's main cost, so what this process knows of ends a stream without it."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import aiohttp
import anyio
import pytest
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.waiting import wait_until

from .conftest import Start

BOUND_S = 10.0
"""Generous: before the fix (issue #10) a stream never ended."""
NEVER_S = 3600.0
"""A re-check timer that never fires within a test: what ends the stream is the revocation's news."""


async def _ws_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, object]]:
    frames: list[dict[str, object]] = []
    with anyio.fail_after(BOUND_S):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(json.loads(msg.data))
    return frames


async def test_a_token_revoked_elsewhere_ends_its_websocket_and_sse_streams(
    start: Start, net: LoopbackNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation this process does not hear of (``msgr-bridge tokens revoke``) is found by the timer."""
    from msgr_bridge.api.routes import events as event_routes

    monkeypatch.setattr(event_routes, "TOKEN_RECHECK_S", 1.0)
    async with start() as api:
        await api.link("alice", "pw-alice")
        assert api.bridge.api is not None
        hub = api.bridge.api.hub
        tokens = TokenStore(api.bridge.db)
        new = await tokens.create(tenant=api.bridge.tenant, name="doomed", scopes=["read:*"])
        ws_url = api.base.replace("http", "ws") + "/v1/events"
        async with (
            api.http.ws_connect(ws_url, headers=api.h(new.token)) as ws,
            api.http.get(api.base + "/v1/events", headers=api.h(new.token)) as sse,
        ):
            await wait_until(lambda: len(hub.clients) == 2)
            await tokens.revoke(new.info.id)
            started = time.monotonic()
            frames = await _ws_until_closed(ws)
            assert frames[-1]["type"] == "unauthorized" and ws.close_code == 1008, frames
            with anyio.fail_after(BOUND_S):
                body = await sse.content.read()
            assert b"event: unauthorized" in body
            assert time.monotonic() - started < BOUND_S
        await wait_until(lambda: not hub.clients)


async def test_an_expiring_token_ends_its_stream(
    start: Start, net: LoopbackNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At its expiry, not at the next timer (issue 19: the timer is rare now)."""
    from msgr_bridge.api.routes import events as event_routes

    monkeypatch.setattr(event_routes, "TOKEN_RECHECK_S", NEVER_S)
    async with start() as api:
        await api.link("alice", "pw-alice")
        new = await TokenStore(api.bridge.db).create(
            tenant=api.bridge.tenant, name="short", scopes=["read:*"], ttl=timedelta(seconds=3)
        )
        ws_url = api.base.replace("http", "ws") + "/v1/events"
        async with api.http.ws_connect(ws_url, headers=api.h(new.token)) as ws:
            frames = await _ws_until_closed(ws)
        assert frames[-1]["type"] == "unauthorized", frames


async def test_a_token_revoked_through_the_api_ends_its_streams_without_the_timer(
    start: Start, net: LoopbackNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the stream's timer is slow now; ``DELETE /v1/tokens/{id}`` ends the streams at once, and the
    authentication cache forgets the token (the next request is a 401, not a cached success)."""
    from msgr_bridge.api.routes import events as event_routes

    monkeypatch.setattr(event_routes, "TOKEN_RECHECK_S", NEVER_S)
    async with start() as api:
        await api.link("alice", "pw-alice")
        assert api.bridge.api is not None
        hub = api.bridge.api.hub
        tokens = TokenStore(api.bridge.db)
        new = await tokens.create(tenant=api.bridge.tenant, name="doomed", scopes=["read:*"])
        ws_url = api.base.replace("http", "ws") + "/v1/events"
        async with (
            api.http.ws_connect(ws_url, headers=api.h(new.token)) as ws,
            api.http.get(api.base + "/v1/events", headers=api.h(new.token)) as sse,
        ):
            await wait_until(lambda: len(hub.clients) == 2)
            async with api.http.get(api.base + "/v1/accounts", headers=api.h(new.token)) as r:
                assert r.status == 200  # the token is in the cache now
            status, _ = await api.call("DELETE", f"/v1/tokens/{new.info.id}")
            assert status == 200
            async with api.http.get(api.base + "/v1/accounts", headers=api.h(new.token)) as r:
                assert r.status == 401
            frames = await _ws_until_closed(ws)
            assert frames[-1]["type"] == "unauthorized" and ws.close_code == 1008, frames
            with anyio.fail_after(BOUND_S):
                body = await sse.content.read()
            assert b"event: unauthorized" in body
        await wait_until(lambda: not hub.clients)


class _StreamClient:
    """What ``watch_token`` uses of an event-stream client."""

    def __init__(self) -> None:
        self.ended: str | None = None
        self.scopes: list[object] = []

    def end(self, why: str) -> None:
        self.ended = why

    def rescope(self, token: object) -> None:
        self.scopes.append(token)


async def test_a_database_outage_during_the_token_recheck_keeps_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a re-check that failed because the database was out ended every stream as unauthorized."""
    from msgr_bridge.api.routes import events as event_routes
    from msgr_bridge.errors import DatabaseError
    from msgr_bridge.store.tokens import Action, Scope, TokenInfo
    from msgr_bridge.store.types import utcnow

    monkeypatch.setattr(event_routes, "TOKEN_RECHECK_S", 0.0)
    token = TokenInfo(
        id="t", tenant="default", name="n", user_id=None, scopes=(Scope(Action.READ),), created_at=utcnow()
    )
    answers: list[object] = [DatabaseError("the database is down"), DatabaseError("still down"), token]
    client = _StreamClient()

    async def reauthenticate() -> TokenInfo:
        answer = answers.pop(0) if answers else None
        if answer is None:
            client.ended = "done"  # end the loop once the script is played
            return token
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, TokenInfo)
        return answer

    await event_routes.watch_token(reauthenticate, client)  # type: ignore[arg-type]
    assert client.ended == "done" and client.scopes[0] is token  # never "unauthorized"
