"""The loopback network over a wire: a server hosting a ``LoopbackNetwork`` and the client a connector uses.

Chaos tests kill the bridge with SIGKILL, so the "remote platform" has to live outside the bridge process.
``RemoteNetworkServer`` hosts a network (in the test's process, or its own: ``python -m
msgr_bridge_loopback.remote``) and speaks JSON over a WebSocket on ``ws://127.0.0.1:PORT``; the loopback
connector uses ``RemoteClient`` when its settings carry ``url``.

The protocol, one JSON object per text frame:

* client -> server requests ``{"id": n, "op": ..., ...}``, answered by ``{"id": n, "result": ...}`` or
  ``{"id": n, "error": {"type": "TransientError", "message": ..., "retry_after": ...}}``. The first request
  must be ``login`` (``user``, ``password``); then ``post`` (``conversation``, ``text``, ``txn_id``,
  ``reply_to``), ``edit``, ``delete``, ``react``, ``read``, ``typing``, ``history`` (``after_seq``,
  ``limit``) and ``directory`` (the user's conversations and their members' names).
* server -> client pushes ``{"push": payload}``; the client acknowledges with ``{"op": "ack", "seqs": [...]}``
  once the bridge has committed them. Deliveries never acknowledged are pushed again at the next login of
  that user, before anything new (like a platform with at-least-once delivery).
* ``post`` is idempotent by ``txn_id`` (Matrix's ``PUT /send/{txnId}``): a resend by the same user returns
  the original payload and posts nothing. ``send_attempts`` counts every request per ``txn_id``, so a test
  can tell how often the bridge resent.

Fault injection stays on the hosted network (``inject_fault``, ``drop``, ``deafen``): the server checks the
operation's fault before acting, and a dropped session closes the WebSocket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from msgr_bridge.errors import (
    AuthenticationFailed,
    BridgeError,
    NotSupported,
    PermanentError,
    RateLimited,
    TransientError,
)

from .network import LoopbackNetwork, Payload, Session

MAX_FRAME = 16 * 1024 * 1024
REQUEST_TIMEOUT_S = 30.0


def _encode_error(exc: BaseException) -> dict[str, Any]:
    kind = type(exc).__name__
    if not isinstance(exc, BridgeError):
        kind = "PermanentError" if isinstance(exc, KeyError | ValueError | TypeError) else "TransientError"
    return {"type": kind, "message": str(exc), "retry_after": getattr(exc, "retry_after", None)}


def _decode_error(error: Mapping[str, Any]) -> BridgeError:
    kind, message = str(error.get("type")), str(error.get("message", "remote error"))
    if kind == "RateLimited":
        return RateLimited(float(error.get("retry_after") or 1.0), message)
    if kind == "AuthenticationFailed":
        return AuthenticationFailed(message)
    if kind == "NotSupported":
        return NotSupported(message)
    if kind == "PermanentError":
        return PermanentError(message)
    return TransientError(f"remote loopback: {message}")


# --- server ---------------------------------------------------------------------------------------------


class RemoteNetworkServer:
    """Host ``network`` on ``ws://host:port/`` (``port=0``: a free port, see ``url``).

    ``async with RemoteNetworkServer(net) as server: ...`` starts and stops it in the caller's event loop.
    """

    def __init__(
        self, network: LoopbackNetwork, *, host: str = "127.0.0.1", port: int = 0, dedupe_txn: bool = True
    ) -> None:
        self.network = network
        self.host, self.port = host, port
        self.dedupe_txn = dedupe_txn
        self.pending: dict[str, dict[int, Payload]] = {}
        """Per user: payloads pushed but not acknowledged yet (pushed again at the next login)."""
        self.send_attempts: Counter[str] = Counter()
        self.pushed = 0
        self.acked = 0
        self.logins = 0
        self._txns: dict[tuple[str, str], Payload] = {}
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def disconnect_all(self) -> None:
        """Close every client connection (the clients see a transient disconnect)."""
        for ws in list(self._sockets):
            await ws.close()

    async def __aenter__(self) -> RemoteNetworkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- one connection ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, compress=False)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: Session | None = None
        forward: asyncio.Task[None] | None = None
        try:
            login = await ws.receive_json(timeout=REQUEST_TIMEOUT_S)
            try:
                if not isinstance(login, dict) or login.get("op") != "login":
                    raise PermanentError("the first request must be a login")
                user = str(login.get("user", ""))
                self.network.authenticate(user, str(login.get("password", "")))
                session = self.network.open_session(user)
            except Exception as exc:
                await ws.send_json(
                    {"id": login.get("id") if isinstance(login, dict) else None, "error": _encode_error(exc)}
                )
                return ws
            self.logins += 1
            await ws.send_json({"id": login.get("id"), "result": {"last_seq": self.network.last_seq()}})
            forward = asyncio.create_task(self._forward(ws, session))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                await self._request(ws, user, msg.json())
        except (TimeoutError, ValueError, ConnectionResetError):
            pass
        finally:
            self._sockets.discard(ws)
            if forward is not None:
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await forward
            if session is not None:
                self.network.close_session(session)
            if not ws.closed:
                await ws.close()
        return ws

    async def _forward(self, ws: web.WebSocketResponse, session: Session) -> None:
        """Push what was never acknowledged, then live payloads; a dropped session closes the socket."""
        pending = self.pending.setdefault(session.user_id, {})
        try:
            for seq in sorted(pending):
                await ws.send_json({"push": pending[seq]})
            while True:
                payload = await session.receive()
                pending[payload["seq"]] = payload
                self.pushed += 1
                await ws.send_json({"push": payload})
        except (EOFError, TransientError, ConnectionResetError, RuntimeError):
            await ws.close()

    async def _request(self, ws: web.WebSocketResponse, user: str, req: Any) -> None:
        if not isinstance(req, dict):
            return
        if req.get("op") == "ack":
            pending = self.pending.get(user, {})
            for seq in req.get("seqs", ()):
                if pending.pop(seq, None) is not None:
                    self.acked += 1
            return
        try:
            result = self._dispatch(user, req)
        except Exception as exc:
            await ws.send_json({"id": req.get("id"), "error": _encode_error(exc)})
        else:
            await ws.send_json({"id": req.get("id"), "result": result})

    def _dispatch(self, user: str, req: dict[str, Any]) -> Any:
        net, op = self.network, str(req.get("op"))
        conv = str(req.get("conversation", ""))
        if op in ("post", "edit", "delete", "react", "read"):
            net.check_fault("send" if op == "post" else op)
        match op:
            case "post":
                txn_id = req.get("txn_id")
                if txn_id:
                    self.send_attempts[txn_id] += 1
                    if self.dedupe_txn and (user, txn_id) in self._txns:
                        return self._txns[(user, txn_id)]
                payload = net.post(
                    conv, user, str(req.get("text", "")), txn_id=txn_id, reply_to=req.get("reply_to")
                )
                if txn_id:
                    self._txns[(user, txn_id)] = payload
                return payload
            case "edit":
                return net.edit(conv, user, str(req["target"]), str(req.get("text", "")))
            case "delete":
                return net.delete(conv, user, str(req["target"]))
            case "react":
                return net.react(
                    conv, user, str(req["target"]), str(req["emoji"]), remove=bool(req.get("remove"))
                )
            case "read":
                return net.read(conv, user, str(req["target"]))
            case "typing":
                return net.typing(conv, user, bool(req.get("active", True)))
            case "history":
                return net.history(user, int(req.get("after_seq", 0)), int(req.get("limit", 10_000)))
            case "directory":
                convs = [
                    {"id": c.id, "name": c.name, "type": c.type, "members": sorted(c.members)}
                    for c in net.conversations.values()
                    if user in c.members
                ]
                names = {m: net.users.get(m, m) for c in convs for m in c["members"]}
                return {"conversations": convs, "users": names, "last_seq": net.last_seq()}
            case _:
                raise PermanentError(f"unknown remote loopback operation {op!r}")


# --- client ---------------------------------------------------------------------------------------------


class RemoteClient:
    """One connector's connection to a ``RemoteNetworkServer``: requests, pushes and acks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._pushes: asyncio.Queue[Payload | BaseException] = asyncio.Queue()
        self._closing = False

    async def login(self, user: str, password: str) -> None:
        """Connect and log in; raises ``AuthenticationFailed`` or ``TransientError`` (unreachable)."""
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(self.url, max_msg_size=MAX_FRAME, compress=0)
        except (aiohttp.ClientError, OSError) as exc:
            await self._http.close()
            raise TransientError(f"remote loopback network {self.url} is unreachable: {exc}") from exc
        self._reader = asyncio.create_task(self._read())
        await self.request("login", user=user, password=password)

    async def request(self, op: str, **args: Any) -> Any:
        ws = self._ws
        if ws is None or ws.closed:
            raise TransientError(f"remote loopback connection to {self.url} is closed")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            await ws.send_json({"id": rid, "op": op, **args})
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await future
        except (ConnectionResetError, aiohttp.ClientError) as exc:
            raise TransientError(f"remote loopback {op} failed: {exc}") from exc
        except TimeoutError as exc:
            raise TransientError(f"remote loopback {op} timed out") from exc
        finally:
            self._waiting.pop(rid, None)

    async def ack(self, seq: int) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise TransientError("the connection closed before the ack; the payload will be redelivered")
        await ws.send_json({"op": "ack", "seqs": [seq]})

    async def receive(self) -> Payload:
        """The next pushed payload; ``EOFError`` after ``close()``, ``TransientError`` if the link broke."""
        item = await self._pushes.get()
        if isinstance(item, BaseException):
            self._pushes.put_nowait(item)  # every later call sees the end too
            raise item
        return item

    async def _read(self) -> None:
        assert self._ws is not None
        end: BaseException = TransientError(f"remote loopback connection to {self.url} was lost")
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = msg.json()
                if "push" in data:
                    self._pushes.put_nowait(data["push"])
                elif (future := self._waiting.get(data.get("id"))) is not None and not future.done():
                    if "error" in data:
                        future.set_exception(_decode_error(data["error"]))
                    else:
                        future.set_result(data.get("result"))
        except Exception as exc:
            end = TransientError(f"remote loopback connection to {self.url} failed: {exc}")
        finally:
            if self._closing:
                end = EOFError("session closed")
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(end if isinstance(end, TransientError) else TransientError(str(end)))
            self._pushes.put_nowait(end)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()


# --- a standalone server ----------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    net = LoopbackNetwork.get(args.network)
    for spec in args.user:
        user, _, password = spec.partition(":")
        net.add_user(user, password=password or None)
    if args.group:
        name, _, members = args.group.partition(":")
        net.create_group(name, name, members.split(","))
    async with RemoteNetworkServer(net, port=args.port) as server:
        print(server.url, flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="serve a loopback network over a WebSocket")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--network", default="default")
    parser.add_argument("--user", action="append", default=[], help="user:password (repeatable)")
    parser.add_argument("--group", default="", help="group:member1,member2")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":  # pragma: no cover
    main()
