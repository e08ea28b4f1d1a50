"""The wire client: one neonize ``NewAClient`` (whatsmeow, compiled from Go, inside neonize's wheel) for one
account, behind the few async calls the connector and the link flow use.

neonize hands events from Go to Python through ``Event.execute`` (protobuf bytes, parsed with neonize's
generated types) and a QR callback; both are registered here and forwarded to ``on_event``/``on_qr`` on the
asyncio loop. Outbound calls build ``waE2E.Message`` protobufs (``outgoing.py``) and go through neonize's
own methods, which serialise them for Go.

The test seam: ``GO_LIBRARY``. neonize calls Go through one function table per client (``async_gocode``,
here wrapped in ``OwnThreadGo``); when ``GO_LIBRARY`` is set, every new client uses that object instead
(tests set a recording fake of the Go library, ``msgr_bridge_whatsapp.testing.FakeWhatsmeow``). Nothing else
is replaced: neonize's Python code,
its protobuf parsing and serialisation, and this connector run as in production. WhatsApp's servers cannot
be faked (whatsmeow's Noise handshake pins WhatsApp's certificate key), so that is where tests stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import warnings
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

with warnings.catch_warnings():  # neonize's import leaves an os.popen pipe open (a ResourceWarning)
    warnings.simplefilter("ignore")
    from neonize.aioze import events as neonize_events
    from neonize.aioze.client import NewAClient, async_gocode, gocode
    from neonize.aioze.events import (
        ChatPresenceEv,
        ConnectedEv,
        ConnectFailureEv,
        DisconnectedEv,
        GroupInfoEv,
        HistorySyncEv,
        JoinedGroupEv,
        KeepAliveRestoredEv,
        KeepAliveTimeoutEv,
        LoggedOutEv,
        MessageEv,
        PairStatusEv,
        ReceiptEv,
        StreamReplacedEv,
        TemporaryBanEv,
    )
    from neonize.exc import NeonizeError
    from neonize.proto.Neonize_pb2 import JID, Contact, GroupInfo, SendResponse, UploadResponse
    from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
    from neonize.utils.enum import ChatPresence, ChatPresenceMedia, MediaType, ReceiptType

    # ... and the finished `uname` children of those os.popen calls wait in subprocess's list of processes
    # to reap; reaped at the next Popen, their unclosed pipes would warn then. Reap them now, quietly.
    reap = getattr(subprocess, "_cleanup", None)
    if callable(reap):
        reap()

from google.protobuf.message import Message as Proto

from msgr_bridge.errors import PermanentError, TransientError

GO_LIBRARY: Any = None
"""The test seam: a stand-in for neonize's Go function table (None: the real whatsmeow library)."""

EVENTS: dict[str, type[Proto]] = {
    "message": MessageEv,
    "receipt": ReceiptEv,
    "presence": ChatPresenceEv,
    "group": GroupInfoEv,
    "joined": JoinedGroupEv,
    "history": HistorySyncEv,
    "connected": ConnectedEv,
    "disconnected": DisconnectedEv,
    "logged_out": LoggedOutEv,
    "pair": PairStatusEv,
    "temporary_ban": TemporaryBanEv,
    "connect_failure": ConnectFailureEv,
    "stream_replaced": StreamReplacedEv,
    "keepalive_timeout": KeepAliveTimeoutEv,
    "keepalive_restored": KeepAliveRestoredEv,
}
"""The neonize events the connector listens to, by the name it knows them under."""

OnEvent = Callable[[str, Proto], Awaitable[None]]
OnQr = Callable[[str], Awaitable[None]]

__all__ = [
    "EVENTS",
    "GO_LIBRARY",
    "JID",
    "Contact",
    "GroupInfo",
    "MediaType",
    "OnEvent",
    "OnQr",
    "SendResponse",
    "UploadResponse",
    "WAMessage",
    "WaClient",
    "jid_of",
    "text_of_jid",
]


class OwnThreadGo:
    """neonize's Go function table with one change: the connection's blocking ``Neonize`` call, which
    returns only when the client stops, runs on a thread of its own. neonize runs it through
    ``asyncio.to_thread``, on the loop's default executor (``min(32, CPUs + 4)`` workers shared by the
    whole bridge), where every connected account would hold a worker for good and a handful of accounts would
    stall everything else that uses it. Every other call is neonize's own (short calls on that executor)."""

    def __init__(self, blocking: Any, calls: Any) -> None:
        self.blocking, self.calls = blocking, calls
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whatsmeow")

    def __getattr__(self, name: str) -> Any:
        if name != "Neonize":
            return getattr(self.calls, name)

        def connect(*args: Any) -> Awaitable[Any]:
            run = functools.partial(self.blocking.Neonize, *args)
            return asyncio.get_running_loop().run_in_executor(self.executor, run)

        return connect

    def close(self) -> None:
        self.executor.shutdown(wait=False)


def go_library() -> Any:
    """What a new client calls Go through: the test seam when set, else whatsmeow on a thread of its own."""
    return GO_LIBRARY if GO_LIBRARY is not None else OwnThreadGo(gocode, async_gocode)


def jid_of(value: str) -> JID:
    """``user@server`` (a conversation or user id) as a neonize JID."""
    user, sep, server = value.partition("@")
    if not sep or not user or not server:
        raise PermanentError(f"{value!r} is not a WhatsApp id (user@s.whatsapp.net or group@g.us)")
    return JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def text_of_jid(jid: JID) -> str:
    """A JID as ``user@server``, the device part dropped (conversation and user ids are per person)."""
    return f"{jid.User}@{jid.Server}" if jid.User else ""


def _wire_error(action: str, exc: Exception) -> Exception:
    """neonize raises its own errors with whatsmeow's message: a lost connection is worth a retry."""
    text = str(exc)
    if any(word in text.lower() for word in ("not connected", "timed out", "websocket", "connection")):
        return TransientError(f"WhatsApp {action} failed: {text}")
    return PermanentError(f"WhatsApp {action} failed: {text}")


class WaClient:
    """One neonize client on one session database."""

    def __init__(self, db_path: str, device_name: str, on_event: OnEvent, on_qr: OnQr | None = None) -> None:
        self.client = NewAClient(db_path, props=DeviceProps(os=device_name, platformType=DeviceProps.DESKTOP))
        self.go = go_library()
        self.client._NewAClient__client = self.go  # see OwnThreadGo, and the test seam in the docstring
        self.client.contact._ContactStore__client = self.go
        if GO_LIBRARY is not None:
            self.client._stop_finalizer.detach()  # the fake's clients are not the Go library's
        self.on_event, self.on_qr = on_event, on_qr
        for name, event_type in EVENTS.items():
            self.client.event(event_type)(self._forward(name))
        if on_qr is not None:
            self.client.event.qr(self._qr)
        self.task: asyncio.Task[Any] | None = None
        self.notice: asyncio.Future[None] | None = None

    def _forward(self, name: str) -> Callable[[Any, Proto], Awaitable[None]]:
        async def handler(_client: Any, event: Proto) -> None:
            await self.on_event(name, event)

        return handler

    async def _qr(self, _client: Any, code: bytes) -> None:
        if self.on_qr is not None:
            await self.on_qr(code.decode(errors="replace"))

    async def start(self) -> None:
        """Dial WhatsApp (neonize runs the connection in a worker thread until ``stop``)."""
        # neonize keeps one module-wide loop for its Go callbacks and sets it only once per process; the
        # bridge has one loop, tests have one per test: point it at the running loop.
        neonize_events.event_global_loop = asyncio.get_running_loop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.task = await self.client.connect()
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        """The connection call returned (whatsmeow gave up, or could not dial) without ``stop``: say so."""
        if self.task is task:
            self.notice = asyncio.ensure_future(self.on_event("ended", None))

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        with contextlib.suppress(Exception):
            await self.client.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        if isinstance(self.go, OwnThreadGo):
            self.go.close()

    def ended(self) -> BaseException | None:
        """What ended the connection task (None while it runs or when it ended cleanly)."""
        if self.task is None or not self.task.done() or self.task.cancelled():
            return None
        return self.task.exception()

    # --- outbound ---------------------------------------------------------------------------------

    async def send(self, chat: str, message: WAMessage) -> SendResponse:
        try:
            return await self.client.send_message(jid_of(chat), message)
        except NeonizeError as exc:
            raise _wire_error("send", exc) from exc

    async def upload(self, data: bytes, media_type: MediaType) -> UploadResponse:
        try:
            return await self.client.upload(data, media_type)
        except NeonizeError as exc:
            raise _wire_error("upload", exc) from exc

    async def download(self, message: WAMessage) -> bytes:
        try:
            data = await self.client.download_any(message)
        except NeonizeError as exc:
            raise _wire_error("download", exc) from exc
        return data or b""

    async def mark_read(self, chat: str, sender: str, message_ids: Sequence[str]) -> None:
        try:
            await self.client.mark_read(
                *message_ids, chat=jid_of(chat), sender=jid_of(sender), receipt=ReceiptType.READ
            )
        except NeonizeError as exc:
            raise _wire_error("read receipt", exc) from exc

    async def typing(self, chat: str, active: bool) -> None:
        state = ChatPresence.CHAT_PRESENCE_COMPOSING if active else ChatPresence.CHAT_PRESENCE_PAUSED
        try:
            await self.client.send_chat_presence(
                jid_of(chat), state, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
            )
        except NeonizeError as exc:
            raise _wire_error("typing", exc) from exc

    async def groups(self) -> Sequence[GroupInfo]:
        try:
            return list(await self.client.get_joined_groups())
        except NeonizeError as exc:
            raise _wire_error("group list", exc) from exc

    async def contacts(self) -> Sequence[Contact]:
        try:
            return list(await self.client.contact.get_all_contacts())
        except NeonizeError as exc:
            raise _wire_error("contact list", exc) from exc

    async def pair_phone(self, phone: str) -> str:
        try:
            return str(await self.client.PairPhone(phone, show_push_notification=True))
        except NeonizeError as exc:
            raise PermanentError(f"WhatsApp refused the phone number: {exc}") from exc
