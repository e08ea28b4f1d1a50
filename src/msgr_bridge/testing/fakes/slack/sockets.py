"""The fake's websockets: Socket Mode (``/link``, events in ``events_api`` envelopes acknowledged by
``envelope_id``) and RTM (``/websocket``, raw events, ``ping``/``pong`` and ``typing`` frames).

A session gets the workspace's events its user may see, through a bounded queue (a consumer that falls
1000 events behind is disconnected, as Slack does with slow clients). Faults: ``disconnect`` sends a
``disconnect`` envelope and closes shortly after; ``deaf`` keeps the socket open but delivers nothing and
answers no ping (the "connected but deaf" case); an envelope not acknowledged within ``ack_timeout`` is
sent again with ``retry_attempt`` + 1, and what a closed socket left unacknowledged goes to the app's next
socket (at most three retries, as Slack does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .entities import TEAM_ID, Token, bounded

if TYPE_CHECKING:
    from .server import FakeSlack

QUEUE_MAX = 1000
MAX_RETRIES = 3
"""Slack retries an unacknowledged envelope three times, on the app's next connection if need be."""
EVENTS_API_TYPES = frozenset(
    {
        "message",
        "reaction_added",
        "reaction_removed",
        "member_joined_channel",
        "member_left_channel",
        "user_change",
        "channel_created",
        "channel_rename",
    }
)
"""Events a Socket Mode app receives (``*_marked`` and ``user_typing`` exist only on RTM)."""


@dataclass(eq=False)
class Session:
    kind: str
    """``socket_mode`` or ``rtm``."""
    token: Token
    ws: web.WebSocketResponse
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    deaf: bool = False
    pending: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    """Socket Mode envelopes sent and not acknowledged: id -> (sent at, envelope)."""

    @property
    def user_id(self) -> str:
        return self.token.user_id

    def offer(self, event: dict[str, Any]) -> None:
        if self.kind == "socket_mode" and event["type"] not in EVENTS_API_TYPES:
            return
        if self.deaf:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            asyncio.get_running_loop().create_task(self.ws.close(code=1008, message=b"too slow"))

    def envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        payload = {
            "token": "fake-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0FAKE0001",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": self.user_id, "is_bot": False}],
        }
        return {
            "envelope_id": str(uuid.uuid4()),
            "payload": payload,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
        }


async def serve(fake: FakeSlack, request: web.Request, kind: str) -> web.StreamResponse:
    token = fake.take_ticket(request.query.get("ticket", ""), kind)
    if token is None:
        return web.Response(status=401, text="invalid or used ticket")
    ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    session = Session(kind, token, ws)
    fake.sessions.add(session)
    writer = asyncio.create_task(_write(fake, session))
    try:
        if kind == "socket_mode":
            hello = {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": "A0FAKE0001"},
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
            }
        else:
            hello = {"type": "hello"}
        await ws.send_str(json.dumps(hello))
        if kind == "socket_mode":
            for frame in fake.unacked.pop(token.value, []):  # what the app's last socket left unacknowledged
                await _send_again(session, frame)
        await _read(fake, session)
    finally:
        fake.sessions.discard(session)
        if kind == "socket_mode" and session.pending:
            left = fake.unacked.get(token.value, [])
            left += [f for _, f in session.pending.values() if f["retry_attempt"] < MAX_RETRIES]
            fake.unacked[token.value] = left[-QUEUE_MAX:]
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await ws.close()
    return ws


async def _write(fake: FakeSlack, session: Session) -> None:
    while not session.ws.closed:
        try:
            event = await asyncio.wait_for(session.queue.get(), timeout=0.2)
        except TimeoutError:
            await _redeliver(fake, session)
            continue
        if session.kind == "socket_mode":
            frame = session.envelope(event)
            session.pending[frame["envelope_id"]] = (time.monotonic(), frame)
        else:
            frame = event
        bounded(fake.pushed, frame)
        await session.ws.send_str(json.dumps(frame))


async def _send_again(session: Session, frame: dict[str, Any]) -> None:
    again = {**frame, "retry_attempt": frame["retry_attempt"] + 1, "retry_reason": "timeout"}
    session.pending[frame["envelope_id"]] = (time.monotonic(), again)
    await session.ws.send_str(json.dumps(again))


async def _redeliver(fake: FakeSlack, session: Session) -> None:
    if fake.ack_timeout is None or session.deaf:
        return
    now = time.monotonic()
    for envelope_id, (sent_at, frame) in list(session.pending.items()):
        if now - sent_at >= fake.ack_timeout:
            again = {**frame, "retry_attempt": frame["retry_attempt"] + 1, "retry_reason": "timeout"}
            session.pending[envelope_id] = (now, again)
            await session.ws.send_str(json.dumps(again))


async def _read(fake: FakeSlack, session: Session) -> None:
    async for frame in session.ws:
        if frame.type == WSMsgType.PING:
            if not session.deaf:
                await session.ws.pong(frame.data)
            continue
        if frame.type != WSMsgType.TEXT:
            continue
        try:
            data = json.loads(frame.data)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if session.kind == "socket_mode":
            envelope_id = data.get("envelope_id")
            if isinstance(envelope_id, str) and session.pending.pop(envelope_id, None) is not None:
                bounded(fake.acks, envelope_id)
            continue
        await _rtm_frame(fake, session, data)


async def _rtm_frame(fake: FakeSlack, session: Session, data: dict[str, Any]) -> None:
    kind, frame_id = data.get("type"), data.get("id")
    if session.deaf:
        return
    if kind == "ping":
        await session.ws.send_str(json.dumps({"type": "pong", "reply_to": frame_id}))
    elif kind == "typing" and isinstance(data.get("channel"), str):
        with contextlib.suppress(Exception):
            fake.workspace.typing(data["channel"], session.user_id)
        bounded(fake.typing, (session.user_id, data["channel"]))


async def disconnect(session: Session, reason: str, grace_s: float) -> None:
    """Send Slack's ``disconnect`` envelope (Socket Mode) and close the socket ``grace_s`` later."""
    if session.kind == "socket_mode" and not session.ws.closed:
        frame = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}}
        with contextlib.suppress(ConnectionError):
            await session.ws.send_str(json.dumps(frame))
    await asyncio.sleep(grace_s)
    await session.ws.close()
