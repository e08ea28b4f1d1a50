"""Discord's gateway over an aiohttp websocket: HELLO, IDENTIFY or RESUME, heartbeats, dispatches.

``GatewayConnection.open`` performs the handshake and returns once the session is ready: after READY and the
GUILD_CREATE of every guild READY listed (fresh IDENTIFY), or after RESUMED (then ``backlog`` holds what
Discord replayed). A refused RESUME (op 9, ``d=false``) falls back to IDENTIFY on the same socket and sets
``resumed = False``, so the connector knows to resync from history. ``next()`` returns the next dispatch
frame and raises: ``AuthenticationFailed`` for close 4004 (token reset), ``PermanentError`` for the close
codes no retry fixes (4010-4014: shards, API version, intents), ``TransientError`` for everything else,
including op 7 (reconnect), a session invalidated mid-run, and a heartbeat Discord stopped acknowledging
(a connection that is up but deaf).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from dataclasses import dataclass, field
from typing import Any, NoReturn

import aiohttp
import orjson

from msgr_bridge.errors import AuthenticationFailed, PermanentError, TransientError

ZLIB_SUFFIX = b"\x00\x00\xff\xff"
MAX_FRAME_BYTES = 16 << 20
CLOSE_CODES_FATAL = {
    4010: "invalid shard",
    4011: "sharding required",
    4012: "invalid API version",
    4013: "invalid intents",
    4014: "disallowed intents: switch the privileged intents on "
    "in the developer portal or turn them off in the settings",
}


@dataclass
class Resume:
    session_id: str
    seq: int
    url: str


@dataclass
class GatewayConnection:
    url: str
    token: str
    intents: int
    compress: bool = True
    timeout_s: float = 20.0
    seq: int | None = None
    session_id: str = ""
    resume_url: str = ""
    resumed: bool = False
    ready: dict[str, Any] = field(default_factory=dict)
    backlog: list[dict[str, Any]] = field(default_factory=list)
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _http: aiohttp.ClientSession | None = None
    _inflate: Any = None
    _heartbeat: asyncio.Task[None] | None = None
    _acked: bool = True
    _deaf: bool = False

    async def open(self, resume: Resume | None) -> None:
        url = resume.url if resume else self.url
        query = "v=10&encoding=json" + ("&compress=zlib-stream" if self.compress else "")
        self._http = aiohttp.ClientSession()
        self._inflate = zlib.decompressobj() if self.compress else None
        try:
            self._ws = await self._http.ws_connect(
                f"{url}?{query}",
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
                max_msg_size=MAX_FRAME_BYTES,
                autoping=True,
            )
            async with asyncio.timeout(self.timeout_s):
                await self._handshake(resume)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self.close()
            raise TransientError(f"Discord gateway handshake failed: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise

    async def _handshake(self, resume: Resume | None) -> None:
        hello = await self._frame()
        if hello.get("op") != 10:
            raise TransientError(f"Discord gateway sent op {hello.get('op')} before HELLO")
        interval = float(hello["d"]["heartbeat_interval"]) / 1000
        self._heartbeat = asyncio.create_task(self._beat(interval))
        if resume is not None:
            self.seq, self.session_id, self.resume_url = resume.seq, resume.session_id, resume.url
            await self._send(
                {"op": 6, "d": {"token": self.token, "session_id": resume.session_id, "seq": resume.seq}}
            )
            while True:
                frame = await self._frame()
                if frame.get("op") == 9:
                    break  # refused: identify afresh on this socket
                if frame.get("op") == 0:
                    self.seq = frame.get("s") or self.seq
                    if frame.get("t") == "RESUMED":
                        self.resumed = True
                        return
                    self.backlog.append(frame)
        self.backlog.clear()
        await self._identify()

    async def _identify(self) -> None:
        props = {"os": "linux", "browser": "msgr-bridge", "device": "msgr-bridge"}
        await self._send({"op": 2, "d": {"token": self.token, "intents": self.intents, "properties": props}})
        pending: set[str] | None = None
        while pending is None or pending:
            frame = await self._frame()
            if frame.get("op") == 9:
                raise TransientError("Discord refused the IDENTIFY (op 9); try again later")
            if frame.get("op") != 0:
                continue
            self.seq = frame.get("s") or self.seq
            if frame.get("t") == "READY":
                self.ready = frame["d"]
                self.session_id = str(frame["d"]["session_id"])
                self.resume_url = str(frame["d"].get("resume_gateway_url") or self.url)
                pending = {str(g["id"]) for g in frame["d"].get("guilds", []) if g.get("unavailable")}
            else:
                self.backlog.append(frame)
                if frame.get("t") == "GUILD_CREATE" and pending is not None:
                    pending.discard(str(frame["d"].get("id")))

    async def _beat(self, interval: float) -> None:
        await asyncio.sleep(interval * random.random())
        while self._ws is not None and not self._ws.closed:
            if not self._acked:
                self._deaf = True
                await self._ws.close(code=4000)
                return
            self._acked = False
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send({"op": 1, "d": self.seq})
            await asyncio.sleep(interval)

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(orjson.dumps(frame).decode())

    async def _payload(self) -> bytes | str:
        """One frame's JSON text; a zlib-stream message may span websocket frames until its sync flush."""
        assert self._ws is not None
        buffer = b""
        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                return str(msg.data)
            if msg.type != aiohttp.WSMsgType.BINARY:
                self._closed(self._ws.close_code)
            buffer += msg.data
            if len(buffer) > MAX_FRAME_BYTES:
                raise TransientError("Discord gateway frame larger than the bridge accepts")
            if self._inflate is None:
                return bytes(buffer)
            if buffer.endswith(ZLIB_SUFFIX):
                data = self._inflate.decompress(buffer, MAX_FRAME_BYTES)
                if self._inflate.unconsumed_tail:
                    raise TransientError("Discord gateway frame larger than the bridge accepts")
                return bytes(data)

    async def _frame(self) -> dict[str, Any]:
        """The next frame, with heartbeats and their acks handled here."""
        while True:
            try:
                frame = orjson.loads(await self._payload())
            except orjson.JSONDecodeError as exc:
                raise TransientError(f"Discord gateway sent a frame that is not JSON: {exc}") from exc
            if not isinstance(frame, dict):
                raise TransientError("Discord gateway sent a frame that is not a JSON object")
            op = frame.get("op")
            if op == 11:
                self._acked = True
            elif op == 1:
                await self._send({"op": 1, "d": self.seq})
            else:
                return frame

    def _closed(self, code: int | None) -> NoReturn:
        if self._deaf:
            raise TransientError(
                "Discord stopped acknowledging heartbeats (connected but deaf); reconnecting"
            )
        if code == 4004:
            raise AuthenticationFailed(
                "Discord refused the bot token (gateway close 4004)",
                hint="the token was reset or revoked: link the account again",
            )
        if code in CLOSE_CODES_FATAL:
            raise PermanentError(f"Discord closed the gateway: {code} {CLOSE_CODES_FATAL[code]}")
        raise TransientError(f"Discord gateway connection closed (code {code})")

    async def next(self) -> dict[str, Any]:
        """The next dispatch (``op`` 0); ``seq`` follows it."""
        if self.backlog:
            return self.backlog.pop(0)
        while True:
            frame = await self._frame()
            op = frame.get("op")
            if op == 0:
                self.seq = frame.get("s") or self.seq
                return frame
            if op == 7:
                raise TransientError("Discord asked the bridge to reconnect (op 7)")
            if op == 9:
                if not frame.get("d"):
                    self.session_id = ""
                raise TransientError("Discord invalidated the gateway session (op 9)")

    async def close(self, code: int = 4000) -> None:
        """Close: 1000 ends the session (Discord forgets it), any 4xxx code keeps it resumable."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            if self._heartbeat is not asyncio.current_task():
                await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close(code=code)
        if self._http is not None:
            await self._http.close()
        self._ws = self._http = self._heartbeat = None
