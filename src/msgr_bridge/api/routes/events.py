"""``GET /v1/events``: the event stream over WebSocket, or Server-Sent Events as a fallback.

Query: ``cursor`` (resume after this ``seq``; SSE also takes the ``Last-Event-ID`` header); without it the
stream starts at the present. Messages are JSON: WebSocket frames are ``{"type": "events", "events":
[...]}`` (several events per frame when they come fast), then ``{"type": "live", "cursor": N}`` once the
replay is done; SSE sends one event per ``data:`` line with ``id: <seq>``. A client that falls too far
behind gets ``{"type": "resume", "cursor": N}`` (SSE: ``event: resume``) and is disconnected: reconnect
with that cursor. See ``inbound/hub.py`` for the no-gap, no-duplicate argument.

The server ends a stream with a last control message carrying the cursor to resume from: ``shutdown``
when the bridge stops (reconnect later), ``unauthorized`` when the token was revoked, expired or lost its
read scope. The token is checked again at once when this process revokes a token or ends a web session
(``DELETE /v1/tokens/{id}``, sign-out: ``TokenChanges``), at its expiry, and otherwise every
``TOKEN_RECHECK_S`` seconds (a revocation from the command line, another process): an idle stream costs
one database read per ``TOKEN_RECHECK_S``. WebSocket close codes: 1001 and 1008.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio
from aiohttp import WSCloseCode, WSMsgType, web

from ...errors import DatabaseError, TokenRejected
from ...inbound.hub import Client, EventHub
from ...store.outage import is_outage
from ...store.tokens import Action, TokenInfo
from ...store.types import utcnow
from ..auth import REAUTH_KEY, TOKEN_CHANGES_KEY, Reauthenticate, TokenChanges, token_of
from ..bodies import int_query
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
TOKEN_RECHECK_S = 10.0
"""The timer behind the checks nothing in this process announces (a revocation by ``msgr-bridge tokens
revoke``). It was 2 s: that read, every 2 s per stream, was half of an idle bridge's CPU (issue 19)."""
EXPIRY_MARGIN_S = 0.05
"""The check at a token's expiry runs this much after it, so that it sees the token expired."""
CLOSE_WAIT_S = 1.0
"""How long a server-side close waits for the client's close frame (aiohttp's default, 10 s, made every
shutdown with a connected client that is not reading wait that long)."""
CLOSE_CODES = {"shutdown": WSCloseCode.GOING_AWAY, "unauthorized": WSCloseCode.POLICY_VIOLATION}


def _may_stream(token: TokenInfo) -> bool:
    return any(s.action in (Action.READ, Action.ADMIN) for s in token.scopes)


async def watch_token(
    reauthenticate: Reauthenticate,
    client: Client,
    changes: TokenChanges | None = None,
    expires_at: datetime | None = None,
) -> None:
    """Check the stream's token again when it may have changed; end the stream once it may no longer read."""
    while client.ended is None:
        with anyio.move_on_after(_next_check_s(expires_at)):
            if changes is not None:
                await changes.wait()
            else:
                await anyio.sleep_forever()
        try:
            token = await reauthenticate()
        except (TokenRejected, ApiProblem):  # revoked, expired, deleted
            client.end("unauthorized")
            return
        except Exception as exc:
            if not (isinstance(exc, DatabaseError) or is_outage(exc)):
                raise
            # The database is out: the token could not be re-checked, so the stream keeps its scope, and the
            # next try waits for the timer (not a loop on an expiry already past).
            expires_at = None
            continue
        if not _may_stream(token):
            client.end("unauthorized")
            return
        expires_at = token.expires_at
        client.rescope(token)


def _next_check_s(expires_at: datetime | None) -> float:
    if expires_at is None:
        return TOKEN_RECHECK_S
    left = (expires_at - utcnow()).total_seconds() + EXPIRY_MARGIN_S
    return min(TOKEN_RECHECK_S, max(EXPIRY_MARGIN_S, left))


async def pump(
    hub: EventHub,
    client: Client,
    cursor: int,
    send: Send,
    send_control: Callable[[str, int], Awaitable[None]],
) -> None:
    last = cursor
    while client.ended is None:
        items, last, done = await hub.replay(client, last)
        if items:
            await send(items, last)
        if done:
            break
    items = []  # sent: not held for the life of the stream
    if client.ended is None:
        await send_control("live", last)
    while True:
        batch = await client.take()
        if client.ended is not None:
            await send_control(client.ended, last)
            return
        if client.lagged:
            await send_control("resume", last)
            return
        out, last = _unsent(batch, last)
        del batch
        if out:
            await send(out, last)
        del out  # not held while waiting: a burst's last frames would stay in memory until the next


def _unsent(batch: list[tuple[int | None, str | None, str]], last: int) -> tuple[list[str], int]:
    """The frames of ``batch`` to send (ephemeral ones, and events after ``last``) and the new ``last``."""
    out = []
    for seq, _, data in batch:
        if seq is None:
            out.append(data)
        elif seq > last:
            out.append(data)
            last = seq
    return out, last


@routes.get("/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    token = token_of(request)
    if not _may_stream(token):
        raise ApiProblem(403, "scope_missing", "the event stream needs a read scope", scope="read:*")
    hub = request.app[HUB_KEY]
    if hub.closing:
        raise ApiProblem(503, "shutting_down", "the bridge is stopping", hint="reconnect in a moment")
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
        async with anyio.create_task_group() as tg:
            changes = request.app.get(TOKEN_CHANGES_KEY)
            tg.start_soon(watch_token, request[REAUTH_KEY], client, changes, token.expires_at)
            ws = web.WebSocketResponse(heartbeat=30.0, compress=False, timeout=CLOSE_WAIT_S)
            if ws.can_prepare(request).ok:
                response: web.StreamResponse = await _websocket(request, ws, hub, client, cursor)
            else:
                response = await _sse(request, hub, client, cursor)
            tg.cancel_scope.cancel()
        return response
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
    await ws.close(code=CLOSE_CODES.get(client.ended or "", WSCloseCode.OK))
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
