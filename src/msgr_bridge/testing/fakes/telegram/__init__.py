"""A wire-level fake of Telegram: an MTProto server that Telethon (and so the connector) talks to over TCP.

::

    fake = FakeTelegram()
    await fake.start()                               # 127.0.0.1, a free port
    alice = fake.world.add_user("Alice", "15550001", password="hunter2")
    bob = fake.world.add_user("Bob", "15550002")
    fake.world.send(bob, alice, "hi")                # Bob writes to Alice: pushed live, or kept for
                                                     # getDifference while Alice is offline
    fake.flood_wait(functions.messages.SendMessageRequest, 3)   # the next send gets FLOOD_WAIT_3
    fake.revoke(alice)                               # her sessions get 401 AUTH_KEY_UNREGISTERED

A client finds the fake through ``MSGR_BRIDGE_TELEGRAM_TEST_SERVER=host:port`` (see the Telegram connector),
which also makes it trust the fake's throwaway RSA key (``keys.py``) for the auth-key exchange. Every
request is parsed by Telethon's TL reader and recorded in ``requests``; anything the fake cannot parse or
does not implement lands in ``protocol_errors``, which tests assert empty. Run it standalone with
``python -m msgr_bridge.testing.fakes.telegram``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from telethon.crypto import AuthKey
from telethon.tl import functions, types
from telethon.tl.core import GzipPacked, MessageContainer

from . import messaging as _messaging  # noqa: F401  (registers the message methods)
from .actions import World
from .files import Files
from .methods import HANDLERS, UNAUTHORIZED_OK, RpcFailure
from .wire import (
    Framing,
    KeyExchange,
    MessageIds,
    decrypt,
    encrypt,
    parse,
    plain_message,
    rpc_error,
    rpc_result,
)
from .world import User

__all__ = ["FakeTelegram", "RpcFailure", "World"]

WRAPPERS = (
    functions.InvokeWithLayerRequest,
    functions.InitConnectionRequest,
    functions.InvokeWithoutUpdatesRequest,
    functions.InvokeAfterMsgRequest,
)
RECORDED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Recorded:
    user_id: int | None
    request: Any

    @property
    def name(self) -> str:
        return type(self.request).__name__


@dataclass(eq=False)
class Connection:
    framing: Framing
    key: AuthKey | None = None
    auth_id: int = 0
    """The id authorizations are kept under (the same for both forms of a short key)."""
    session_id: int = 0
    ids: MessageIds = field(default_factory=MessageIds)
    sent: int = 0
    wants_updates: bool = True
    kex: KeyExchange = field(default_factory=KeyExchange)

    @property
    def key_id(self) -> int:
        return self.auth_id

    def send(self, body: bytes) -> None:
        assert self.key is not None
        self.sent += 1
        packet = encrypt(self.key, self.session_id, self.ids.next(), self.sent * 2 + 1, body)
        self.framing.write(packet)


class FakeTelegram:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.world = World(self._push)
        self.files = Files()
        """Uploads, photos and documents (``files.add(...)`` for a file someone else sends)."""
        self.keys: dict[int, AuthKey] = {}
        self.key_aliases: dict[int, int] = {}
        self.authorizations: dict[int, int] = {}
        """auth key id -> logged-in user id."""
        self.revoked: dict[int, str] = {}
        """auth key id -> the 401 error its requests get (a terminated session)."""
        self.pending_2fa: dict[int, int] = {}
        self.login_codes: dict[str, int] = {}
        self.login_tokens: dict[bytes, tuple[int, int | None]] = {}
        self.srp: dict[int, Any] = {}
        self.floods: dict[type, deque[int]] = {}
        self.unanswered: dict[type, int] = {}
        self.muted: set[int] = set()
        self.difference_limit = 100
        self.requests: deque[Recorded] = deque(maxlen=RECORDED_MAX)
        self.protocol_errors: list[str] = []
        self.typing_seen: deque[tuple[int, Any, bool]] = deque(maxlen=1000)
        self.connections: set[Connection] = set()
        self.changed = asyncio.Event()
        self._server: asyncio.Server | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (users, messages and keys are kept for a restart)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.framing.writer.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # --- faults and observation ---------------------------------------------------------------------

    def flood_wait(self, request_type: type, seconds: int, times: int = 1) -> None:
        """The next ``times`` calls of ``request_type`` get ``420 FLOOD_WAIT_<seconds>``."""
        self.floods.setdefault(request_type, deque()).extend([seconds] * times)

    def drop_answer(self, request_type: type, times: int = 1) -> None:
        """The next ``times`` calls of ``request_type`` are carried out, then the connection drops before
        the answer (the client cannot know whether it happened)."""
        self.unanswered[request_type] = self.unanswered.get(request_type, 0) + times

    def revoke(self, user: User, error: str = "AUTH_KEY_UNREGISTERED") -> None:
        """Terminate every session of ``user``: their requests get 401 ``error``; connections drop."""
        for key_id, uid in list(self.authorizations.items()):
            if uid == user.id:
                del self.authorizations[key_id]
                self.revoked[key_id] = error
        self.disconnect(user)

    def disconnect(self, user: User) -> None:
        """Drop ``user``'s live connections (the client reconnects by itself)."""
        for conn in list(self.connections):
            if self.authorizations.get(conn.key_id) == user.id or conn.key_id in self.revoked:
                conn.framing.writer.close()

    def scan_qr(self, token: bytes, user: User) -> None:
        """``user`` accepts a QR login token from an already logged-in device."""
        key_id, _ = self.login_tokens[token]
        self.login_tokens[token] = (key_id, user.id)
        for conn in list(self.connections):
            if conn.key_id == key_id:
                conn.send(bytes(types.UpdateShort(types.UpdateLoginToken(), self._now())))

    def online(self, user: User) -> bool:
        return any(self.authorizations.get(c.key_id) == user.id for c in self.connections)

    def calls(self, name: str) -> list[Recorded]:
        return [r for r in self.requests if r.name == name]

    # --- used by the methods ------------------------------------------------------------------------

    def user_of(self, conn: Connection) -> User | None:
        uid = self.authorizations.get(conn.key_id)
        return self.world.users.get(uid) if uid is not None else None

    def authorize(self, conn: Connection, user: User, *, password_checked: bool = False) -> Any:
        if user.password is not None and not password_checked:
            self.pending_2fa[conn.key_id] = user.id
            raise RpcFailure(401, "SESSION_PASSWORD_NEEDED")
        self.pending_2fa.pop(conn.key_id, None)
        self.revoked.pop(conn.key_id, None)
        self.authorizations[conn.key_id] = user.id
        return types.auth.Authorization(user=user.tl(user.id))

    @staticmethod
    def _now() -> Any:
        from .world import now

        return now()

    def _push(self, user_id: int, updates: Any, origin: Any) -> None:
        self.changed.set()
        if user_id in self.muted:
            return
        for conn in list(self.connections):
            if conn is not origin and conn.wants_updates and self.authorizations.get(conn.key_id) == user_id:
                conn.send(bytes(updates))

    # --- the connection -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(Framing(reader, writer))
        self.connections.add(conn)
        try:
            while True:
                packet = await conn.framing.read()
                (key_id,) = struct.unpack("<Q", packet[:8])
                if key_id == 0:
                    self._plain(conn, packet)
                    continue
                key = self.keys.get(key_id)
                if key is None:
                    conn.framing.write(struct.pack("<i", -404))  # what Telegram sends for an unknown key
                    break
                incoming = decrypt(key, packet)
                conn.key, conn.session_id = key, incoming.session_id
                conn.auth_id = self.key_aliases.get(key_id, key_id)
                await self._handle(conn, incoming.msg_id, parse(incoming.body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # a request the fake cannot read: the test must fail
            self.protocol_errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.connections.discard(conn)
            writer.close()

    def _plain(self, conn: Connection, packet: bytes) -> None:
        (length,) = struct.unpack("<i", packet[16:20])
        answer, key = conn.kex.answer(parse(packet[20 : 20 + length]))
        conn.framing.write(plain_message(conn.ids.next(), bytes(answer)))
        if key is not None:
            self.register_key(key)

    def register_key(self, key: AuthKey) -> None:
        """Accept ``key`` from now on (the end of a key exchange)."""
        self.keys[key.key_id] = key
        if len(key.key) < 256:
            # Telethon keeps g^ab without its leading zero bytes (1 key in 256), and StringSession saves it
            # zero-padded at the end: after a restart the client uses that key, so it must work too.
            padded = AuthKey(key.key.ljust(256, b"\0"))
            self.keys[padded.key_id] = padded
            self.key_aliases[padded.key_id] = key.key_id  # one device: logged in under either form

    async def _handle(self, conn: Connection, msg_id: int, obj: Any) -> None:
        if isinstance(obj, MessageContainer):
            for message in obj.messages:
                await self._handle(conn, message.msg_id, message.obj)
            return
        if isinstance(obj, GzipPacked):
            await self._handle(conn, msg_id, parse(obj.data))
            return
        if isinstance(obj, types.MsgsAck):
            return
        if isinstance(obj, functions.PingRequest | functions.PingDelayDisconnectRequest):
            conn.send(bytes(types.Pong(msg_id=msg_id, ping_id=obj.ping_id)))
            return
        while isinstance(obj, WRAPPERS):
            if isinstance(obj, functions.InvokeWithoutUpdatesRequest):
                conn.wants_updates = False
            obj = obj.query
        await self._call(conn, msg_id, obj)

    async def _call(self, conn: Connection, msg_id: int, request: Any) -> None:
        user = self.user_of(conn)
        self.requests.append(Recorded(user.id if user else None, request))
        self.changed.set()
        handler = HANDLERS.get(type(request))
        try:
            if handler is None:
                self.protocol_errors.append(f"the fake does not implement {type(request).__name__}")
                raise RpcFailure(400, "METHOD_NOT_IMPLEMENTED_BY_FAKE")
            if user is None and type(request) not in UNAUTHORIZED_OK:
                raise RpcFailure(401, self.revoked.get(conn.key_id, "AUTH_KEY_UNREGISTERED"))
            waits = self.floods.get(type(request))
            if waits:
                raise RpcFailure(420, f"FLOOD_WAIT_{waits.popleft()}")
            result = await handler(self, conn, request)
        except RpcFailure as failure:
            conn.send(rpc_error(msg_id, failure.code, failure.message))
            return
        if self.unanswered.get(type(request)):
            self.unanswered[type(request)] -= 1
            conn.framing.writer.close()
            return
        if isinstance(result, bool):  # TL's Bool: boolTrue / boolFalse
            body = struct.pack("<I", 0x997275B5 if result else 0xBC799737)
        elif isinstance(result, list):  # a Vector of objects
            body = struct.pack("<Ii", 0x1CB5C415, len(result)) + b"".join(bytes(x) for x in result)
        else:
            body = bytes(result)
        conn.send(rpc_result(msg_id, body))
