"""``GET /v1/events``: the event stream over WebSocket, or Server-Sent Events as a fallback.

Query: ``cursor`` (resume after this ``seq``; SSE also takes the ``Last-Event-ID`` header); without it the
stream starts at the present. Messages are JSON: WebSocket frames are ``{"type": "events", "events":
[...]}`` (several events per frame when they come fast), then ``{"type": "live", "cursor": N}`` once the
replay is done; SSE sends one event per ``data:`` line with ``id: <seq>``. A client that falls too far
behind gets ``{"type": "resume", "cursor": N}`` (SSE: ``event: resume``) and is disconnected: reconnect
with that cursor. See ``api/events.py`` for the no-gap, no-duplicate argument.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio
from aiohttp import WSMsgType, web

from ...store.tokens import Action
from ..auth import token_of
from ..bodies import int_query
from ..events import Client, EventHub
from ..keys import HUB_KEY
from ..openapi import op
from ..problems import ApiProblem

routes = web.RouteTableDef()
DOCS = [
    op(
        "GET",
        "/v1/events",
        "Event stream (WebSocket, or SSE)",
        scope="read",
        query=("cursor", "access_token"),
    )
]

Send = Callable[[list[str], int], Awaitable[None]]


async def pump(
    hub: EventHub,
    client: Client,
    cursor: int,
    send: Send,
    send_control: Callable[[str, int], Awaitable[None]],
) -> None:
    last = cursor
    while True:
        items, last, done = await hub.replay(client, last)
        if items:
            await send(items, last)
        if done:
            break
    await send_control("live", last)
    while True:
        batch = await client.take()
        if client.lagged:
            await send_control("resume", last)
            return
        out = []
        for seq, _, data in batch:
            if seq is None:
                out.append(data)
            elif seq > last:
                out.append(data)
                last = seq
        if out:
            await send(out, last)


@routes.get("/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    token = token_of(request)
    if not any(s.action in (Action.READ, Action.ADMIN) for s in token.scopes):
        raise ApiProblem(403, "scope_missing", "the event stream needs a read scope", scope="read:*")
    hub = request.app[HUB_KEY]
    cursor = int_query(request, "cursor", None, lo=0)
    if cursor is None and request.headers.get("Last-Event-ID", "").isdigit():
        cursor = int(request.headers["Last-Event-ID"])
    head = await hub.events.last_seq()
    if cursor is None:
        cursor = head
    elif cursor > head:
        # A cursor no event has reached could only come from another log (another database, a reset); a
        # client must never move the hub's mark past rows other clients still need (``register``).
        raise ApiProblem(
            400,
            "cursor_ahead",
            f"cursor {cursor} is past the newest event ({head})",
            hint="reconnect without a cursor (the stream starts at the present) or with a seq you received",
            field="cursor",
        )
    client = hub.register(token, cursor)
    try:
        ws = web.WebSocketResponse(heartbeat=30.0, compress=False)
        if ws.can_prepare(request).ok:
            return await _websocket(request, ws, hub, client, cursor)
        return await _sse(request, hub, client, cursor)
    finally:
        hub.unregister(client)


async def _websocket(
    request: web.Request, ws: web.WebSocketResponse, hub: EventHub, client: Client, cursor: int
) -> web.WebSocketResponse:
    await ws.prepare(request)

    async def send(items: list[str], last: int) -> None:
        await ws.send_str('{"type":"events","events":[' + ",".join(items) + "]}")

    async def control(kind: str, last: int) -> None:
        await ws.send_str(f'{{"type":"{kind}","cursor":{last}}}')

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            with contextlib.suppress(ConnectionResetError, RuntimeError):  # the client went away
                await pump(hub, client, cursor, send, control)
            tg.cancel_scope.cancel()

        tg.start_soon(run)
        async for msg in ws:  # the client only closes or pings
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        tg.cancel_scope.cancel()
    await ws.close()
    return ws


async def _sse(request: web.Request, hub: EventHub, client: Client, cursor: int) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)

    async def send(items: list[str], last: int) -> None:
        chunks = []
        for data in items:
            seq = data[7 : data.index(",")] if data.startswith('{"seq":') else "null"
            chunks.append((f"id: {seq}\n" if seq != "null" else "") + f"data: {data}\n\n")
        await resp.write("".join(chunks).encode())

    async def control(kind: str, last: int) -> None:
        await resp.write(f'event: {kind}\ndata: {{"cursor":{last}}}\n\n'.encode())

    with contextlib.suppress(ConnectionResetError, RuntimeError):  # the client went away
        await pump(hub, client, cursor, send, control)
    return resp
