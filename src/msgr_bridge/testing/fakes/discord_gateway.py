"""The gateway half of the Discord fake: sessions, sequence numbers, resume and the websocket protocol.

One ``GatewaySession`` per IDENTIFY, as on Discord: it numbers every dispatch it receives (``s``), keeps the
last ``BACKLOG`` of them, and outlives its websocket for ``resume_window_s`` so a RESUME with the last
sequence the client saw replays what it missed (then ``RESUMED``). A RESUME the fake cannot honour (unknown
or expired session, a sequence older than the backlog, or ``refuse_resume`` set) gets op 9 with ``d=false``
and the client must IDENTIFY afresh. With ``compress=zlib-stream`` in the URL every frame is one zlib
stream's output up to a ``Z_SYNC_FLUSH`` (binary frames), as Discord sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .discord import DiscordFake

BACKLOG = 1000
"""Dispatches kept per session for RESUME (a longer gap is refused, as Discord refuses an old sequence)."""
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_AUTH_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_INVALID_SEQ = 4007
CLOSE_SESSION_TIMEOUT = 4009
CLOSE_DISALLOWED_INTENTS = 4014
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_RECONNECT = 0, 1, 2, 6, 7
OP_PRESENCE_UPDATE, OP_REQUEST_MEMBERS = 3, 8
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_GUILD_MESSAGE_TYPING = 1 << 11
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_DIRECT_MESSAGE_TYPING = 1 << 14
INTENT_MESSAGE_CONTENT = 1 << 15
THREADS = (10, 11, 12)
MESSAGE_EVENTS = frozenset({"MESSAGE_CREATE", "MESSAGE_UPDATE"})
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_MESSAGE_CONTENT | (1 << 8)


def _data(frame: dict[str, Any]) -> dict[str, Any]:
    d = frame.get("d")
    return d if isinstance(d, dict) else {}


class Connection:
    """One websocket: frames go out in order through a queue drained by one writer task."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.deflate = zlib.compressobj() if compress else None
        self.closed_by_server = False
        self.writer = asyncio.create_task(self._write())

    def send(self, frame: dict[str, Any]) -> None:
        self.queue.put_nowait(frame)

    async def _write(self) -> None:
        while (frame := await self.queue.get()) is not None:
            data = orjson.dumps(frame)
            try:
                if self.deflate is not None:
                    await self.ws.send_bytes(
                        self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
                    )
                else:
                    await self.ws.send_str(data.decode())
            except (ConnectionResetError, RuntimeError):
                return

    async def close(self, code: int) -> None:
        self.closed_by_server = True
        self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer, 2)
        await self.ws.close(code=code, message=b"")


@dataclass
class GatewaySession:
    id: str
    user_id: str
    token: str
    intents: int
    seq: int = 0
    backlog: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=BACKLOG))
    connection: Connection | None = None
    detached_at: float | None = None

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}
        self.backlog.append(frame)
        if self.connection is not None:
            self.connection.send(frame)


class Gateway:
    """Sessions and the websocket handler; the model (users, guilds, messages) is ``DiscordFake``'s."""

    def __init__(self, fake: DiscordFake) -> None:
        self.fake = fake
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[Connection] = set()
        self.heartbeat_interval_ms = 41250
        self.resume_window_s = 60.0
        self.ack_heartbeats = True
        self.refuse_resume = False
        self.identifies = 0
        self.resumes = 0
        self.frames_received: deque[dict[str, Any]] = deque(maxlen=10_000)

    # --- the model's side ---------------------------------------------------------------------------

    def live_sessions(self) -> list[GatewaySession]:
        now = time.monotonic()
        for sid, s in list(self.sessions.items()):
            if s.detached_at is not None and now - s.detached_at > self.resume_window_s:
                del self.sessions[sid]
        return list(self.sessions.values())

    def dispatch(self, event: str, data: dict[str, Any], *, to: set[str], intent: int) -> None:
        """Send ``event`` to the sessions of the users in ``to`` that declared ``intent`` (0: always)."""
        for session in self.live_sessions():
            if session.user_id in to and (intent == 0 or session.intents & intent):
                session.dispatch(event, self.shape_for(session, event, data))

    async def close_sessions_of(self, token: str, code: int) -> None:
        for sid, session in list(self.sessions.items()):
            if session.token == token:
                del self.sessions[sid]
                if session.connection is not None:
                    await session.connection.close(code)

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every websocket (sessions stay resumable, as after a network blip)."""
        for connection in list(self.connections):
            await connection.close(code)

    def request_reconnect(self) -> None:
        """Send op 7 on every connection: the client should close and RESUME."""
        for connection in self.connections:
            connection.send({"op": OP_RECONNECT, "d": None})

    def invalidate_sessions(self) -> None:
        """Forget every session: the next RESUME is refused (op 9, d=false)."""
        self.sessions.clear()

    # --- the websocket --------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        connection = Connection(ws, request.query.get("compress") == "zlib-stream")
        self.connections.add(connection)
        session: GatewaySession | None = None
        connection.send({"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                try:
                    frame = orjson.loads(msg.data)
                    op = frame.get("op")
                except (orjson.JSONDecodeError, AttributeError):
                    await connection.close(CLOSE_DECODE_ERROR)
                    break
                self.frames_received.append(frame)
                if op == OP_HEARTBEAT:
                    if self.ack_heartbeats:
                        connection.send({"op": OP_HEARTBEAT_ACK})
                elif op in (OP_IDENTIFY, OP_RESUME) and session is not None:
                    await connection.close(CLOSE_ALREADY_AUTHENTICATED)
                elif op == OP_IDENTIFY:
                    session = await self._identify(connection, _data(frame))
                elif op == OP_RESUME:
                    session = self._resume(connection, _data(frame))
                elif op not in (OP_REQUEST_MEMBERS, OP_PRESENCE_UPDATE):
                    await connection.close(CLOSE_UNKNOWN_OPCODE)
        finally:
            self.connections.discard(connection)
            if session is not None and session.connection is connection:
                session.connection = None
                session.detached_at = time.monotonic()
                if not connection.closed_by_server and ws.close_code in (1000, 1001):
                    self.sessions.pop(session.id, None)  # a clean close ends the session, as on Discord
            connection.queue.put_nowait(None)
        return ws

    async def _identify(self, connection: Connection, d: dict[str, Any]) -> GatewaySession | None:
        token = str(d.get("token", "")).removeprefix("Bot ")
        user_id = self.fake.tokens.get(token)
        if user_id is None:
            await connection.close(CLOSE_AUTH_FAILED)
            return None
        intents = d.get("intents")
        if not isinstance(intents, int) or intents & PRIVILEGED_INTENTS & ~self.fake.privileged_intents:
            await connection.close(CLOSE_DISALLOWED_INTENTS)
            return None
        self.identifies += 1
        session = GatewaySession(id=secrets.token_hex(16), user_id=user_id, token=token, intents=intents)
        session.connection = connection
        self.sessions[session.id] = session
        guilds = [g for g in self.fake.guilds.values() if user_id in g["members"]]
        session.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.fake.users[user_id],
                "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
                "session_id": session.id,
                "resume_gateway_url": self.fake.gateway_url,
                "application": {"id": user_id, "flags": 0},
                "private_channels": [],
            },
        )
        if intents & INTENT_GUILDS:
            for guild in guilds:
                session.dispatch("GUILD_CREATE", self.guild_payload(guild["id"], session))
        return session

    def _resume(self, connection: Connection, d: dict[str, Any]) -> GatewaySession | None:
        token = str(d.get("token", "")).removeprefix("Bot ")
        session = self.sessions.get(str(d.get("session_id")))
        seq = d.get("seq")
        live = session is not None and session in self.live_sessions()
        if (
            self.refuse_resume
            or session is None
            or not live
            or session.token != token
            or not isinstance(seq, int)
            or seq > session.seq
            or (session.backlog and seq < session.backlog[0]["s"] - 1)
        ):
            connection.send({"op": OP_INVALID_SESSION, "d": False})
            return None
        if session.connection is not None:
            old, session.connection = session.connection, None
            asyncio.get_running_loop().create_task(old.close(4000))
        self.resumes += 1
        for frame in session.backlog:
            if frame["s"] > seq:
                connection.send(frame)
        session.connection, session.detached_at = connection, None
        session.dispatch("RESUMED", {})
        return session

    # --- what one session sees -----------------------------------------------------------------------

    def shape_for(self, session: GatewaySession, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """What one bot receives: without MESSAGE_CONTENT, guild messages not from or mentioning it are
        emptied, as Discord does."""
        if event not in MESSAGE_EVENTS or session.intents & INTENT_MESSAGE_CONTENT or "guild_id" not in data:
            return data
        author = data.get("author", {}).get("id")
        if author == session.user_id or any(m["id"] == session.user_id for m in data.get("mentions", [])):
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

    def guild_payload(self, guild_id: str, session: GatewaySession) -> dict[str, Any]:
        guild = self.fake.guilds[guild_id]
        channels = [self.fake.channels[c] for c in guild["channels"]]
        members = list(guild["members"].values())
        return {
            "id": guild_id,
            "name": guild["name"],
            "owner_id": guild["owner_id"],
            "unavailable": False,
            "roles": [],
            "emojis": [],
            "member_count": len(members),
            "joined_at": datetime.now(UTC).isoformat(),
            "channels": [c for c in channels if c["type"] not in THREADS],
            "threads": [c for c in channels if c["type"] in THREADS],
            "members": members if session.intents & INTENT_GUILD_MEMBERS else members[:1],
        }
