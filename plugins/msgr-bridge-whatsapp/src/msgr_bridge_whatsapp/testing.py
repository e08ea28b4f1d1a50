"""The test boundary: a recording stand-in for whatsmeow's Go library, and builders of neonize's events.

WhatsApp's servers cannot be faked (whatsmeow's Noise handshake pins WhatsApp's certificate key), so the
boundary is neonize's Python surface. ``FakeWhatsmeow`` takes the place of neonize's Go function table
(``client.GO_LIBRARY``): it receives exactly the bytes neonize would hand to Go (serialised JIDs and
``waE2E.Message`` protobufs, parsed back here and recorded) and answers with the protobuf bytes Go would
return. ``emit`` plays WhatsApp's side: it serialises a real neonize event protobuf and calls the ctypes
callback neonize registered with Go, so neonize's own dispatcher (``Event.execute``) parses it and calls
the connector's handler, as it does for Go. Builders (``message_event``...) fill the many proto2 fields
neonize requires.

What this cannot show: whatsmeow itself (its Noise/Signal encryption, reconnects, retries, app state,
what WhatsApp's servers accept or refuse), and anything a real phone does.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from neonize.events import EVENT_TO_INT
from neonize.proto import Neonize_pb2 as N
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

from .client import jid_of

EMPTY_JID = N.JID(User="", Server="", RawAgent=0, Device=0, Integrator=0, IsEmpty=True)


@dataclass
class GoClient:
    """What neonize registered with "Go" for one client (its database path is its name)."""

    name: str
    event_cb: Any
    qr_cb: Any
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Sent:
    chat: str
    message: WAMessage
    id: str


class FakeWhatsmeow:
    """Stands in for neonize's Go library; records every call. ``on_connect(fake, uuid)`` runs when a
    client connects (default: emit ``Connected``, as whatsmeow does for a paired session)."""

    def __init__(self) -> None:
        self.clients: dict[bytes, GoClient] = {}
        self.calls: list[tuple[str, Any]] = []
        self.sent: list[Sent] = []
        self.uploads: list[bytes] = []
        self.files: dict[str, bytes] = {}
        self.groups: list[N.GroupInfo] = []
        self.contacts: list[N.Contact] = []
        self.pair_code = "ABCD-EFGH"
        self.ids = itertools.count(1)
        self.on_connect: Callable[[FakeWhatsmeow, bytes], Awaitable[None]] | None = connected
        self.dial_error = ""
        self.phone: tuple[str, str] | None = None
        """How the phone answers a QR code: ("accept", jid) pairs at once, ("refuse", reason) refuses."""
        self.connected = asyncio.Event()

    # --- the Go functions neonize calls ---------------------------------------------------------------

    async def Neonize(self, name: bytes, uuid: bytes, *args: Any) -> bytes:
        qr_cb, _login_cb, event_cb = args[4], args[5], args[6]
        client = GoClient(name.decode(), event_cb, qr_cb)
        self.clients[uuid] = client
        with sqlite3.connect(client.name) as db:  # whatsmeow creates its session database on connect
            db.execute("CREATE TABLE IF NOT EXISTS whatsmeow_device (jid TEXT PRIMARY KEY)")
        db.close()
        self.calls.append(("Neonize", name.decode()))
        self.connected.set()
        if self.dial_error:  # whatsmeow could not reach WhatsApp: the call returns its error at once
            return self.dial_error.encode()
        if self.on_connect is not None:
            await self.on_connect(self, uuid)
        await client.stopped.wait()
        return b""

    async def Stop(self, uuid: bytes) -> None:
        self.calls.append(("Stop", uuid))
        if uuid in self.clients:
            self.clients[uuid].stopped.set()

    async def Disconnect(self, uuid: bytes) -> None:
        await self.Stop(uuid)

    async def SendMessage(self, uuid: bytes, to: bytes, _tl: int, msg: bytes, _ml: int) -> bytes:
        jid, message = N.JID.FromString(to), WAMessage.FromString(msg)
        sent = Sent(f"{jid.User}@{jid.Server}", message, f"3EB0{next(self.ids):012X}")
        self.sent.append(sent)
        self.calls.append(("SendMessage", sent))
        timings = N.MessageDebugTimings(**{f.name: 0 for f in N.MessageDebugTimings.DESCRIPTOR.fields})
        response = N.SendResponse(Timestamp=1_700_000_000, ID=sent.id, ServerID=0, DebugTimings=timings)
        return bytes(N.SendMessageReturnFunction(SendResponse=response).SerializeToString())

    async def Upload(self, uuid: bytes, data: bytes, size: int, media_type: int) -> bytes:
        self.uploads.append(bytes(data[:size]))
        path = f"/v/t62/{len(self.uploads)}"
        self.files[path] = bytes(data[:size])
        response = N.UploadResponse(
            url=f"https://mmg.whatsapp.net{path}", DirectPath=path, Handle="h", MediaKey=b"k" * 32,
            FileEncSHA256=b"e" * 32, FileSHA256=b"s" * 32, FileLength=size,
        )  # fmt: skip
        return bytes(N.UploadReturnFunction(UploadResponse=response).SerializeToString())

    async def DownloadAny(self, uuid: bytes, msg: bytes, size: int) -> bytes:
        message = WAMessage.FromString(msg)
        for kind in ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage"):
            if message.HasField(kind):
                path = getattr(message, kind).directPath
                if path in self.files:
                    return bytes(N.DownloadReturnFunction(Binary=self.files[path]).SerializeToString())
        return bytes(N.DownloadReturnFunction(Error="failed to download: 404").SerializeToString())

    async def MarkRead(
        self, uuid: bytes, ids: bytes, ts: int, chat: bytes, _cl: int, sender: bytes, *rest: Any
    ) -> bytes:
        self.calls.append(("MarkRead", (ids.decode().split(), _text(chat), _text(sender), rest[-1])))
        return b""

    async def SendChatPresence(self, uuid: bytes, jid: bytes, _l: int, state: int, media: int) -> bytes:
        self.calls.append(("SendChatPresence", (_text(jid), state)))
        return b""

    async def GetJoinedGroups(self, uuid: bytes) -> bytes:
        return bytes(N.GetJoinedGroupsReturnFunction(Group=self.groups).SerializeToString())

    async def GetAllContacts(self, uuid: bytes) -> bytes:
        return bytes(N.ContactsGetAllContactsReturnFunction(Contact=self.contacts).SerializeToString())

    async def PairPhone(self, uuid: bytes, payload: bytes, size: int) -> bytes:
        params = N.PairPhoneParams.FromString(payload)
        self.calls.append(("PairPhone", params.phone))
        return bytes(N.PairPhoneReturnFunction(Code=self.pair_code).SerializeToString())

    # --- WhatsApp's side --------------------------------------------------------------------------

    def client(self, uuid: bytes | None = None) -> tuple[bytes, GoClient]:
        if uuid is None:
            uuid = next(reversed(self.clients))
        return uuid, self.clients[uuid]

    def emit(self, event: Any, uuid: bytes | None = None) -> None:
        """Hand one event protobuf to neonize's dispatcher through the callback it gave Go."""
        uuid, client = self.client(uuid)
        raw = event.SerializeToString()
        buffer = ctypes.create_string_buffer(raw, len(raw))
        client.event_cb(uuid, ctypes.addressof(buffer), len(raw), EVENT_TO_INT[type(event)])

    def emit_qr(self, code: str, uuid: bytes | None = None) -> None:
        uuid, client = self.client(uuid)
        buffer = ctypes.create_string_buffer(code.encode())
        client.qr_cb(None, ctypes.addressof(buffer))

    def pair(self, jid_text: str, uuid: bytes | None = None) -> None:
        """The phone scanned the code: whatsmeow stores the device and says so, then reconnects."""
        uuid, client = self.client(uuid)
        with sqlite3.connect(client.name) as db:
            db.execute("INSERT OR REPLACE INTO whatsmeow_device VALUES (?)", (jid_text,))
        db.close()
        status = N.PairStatus(
            ID=jid(jid_text), BusinessName="", Platform="android", Status=N.PairStatus.SUCCESS
        )
        self.emit(status, uuid)
        self.emit(N.Connected(status=True), uuid)

    def answer_qr(self, uuid: bytes) -> None:
        """The phone's answer to the QR code shown by ``uuid`` (``phone``): pair, refuse, or nothing."""
        if self.phone is not None and self.phone[0] == "accept":
            self.pair(self.phone[1], uuid)
        elif self.phone is not None:
            refused = N.PairStatus(ID=EMPTY_JID, BusinessName="", Platform="", Status=N.PairStatus.ERROR)
            refused.Error = self.phone[1]
            self.emit(refused, uuid)

    def sent_to(self, chat: str) -> list[Sent]:
        return [s for s in self.sent if s.chat == chat]


def _text(raw: bytes) -> str:
    jid = N.JID.FromString(raw)
    return f"{jid.User}@{jid.Server}"


def paired_device(path: str) -> str | None:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT jid FROM whatsmeow_device").fetchone()
    db.close()
    return str(row[0]) if row else None


async def connected(fake: FakeWhatsmeow, uuid: bytes) -> None:
    """What whatsmeow does on connect: ``Connected`` with a paired session, QR codes without one."""
    if paired_device(fake.clients[uuid].name) is not None:
        fake.emit(N.Connected(status=True), uuid)
    else:
        fake.emit_qr("2@first-qr-code,abc,def", uuid)
        fake.answer_qr(uuid)


def jid(value: str) -> N.JID:
    return jid_of(value) if value else EMPTY_JID


def source(chat: str, sender: str, *, from_me: bool = False) -> N.MessageSource:
    return N.MessageSource(
        Chat=jid(chat), Sender=jid(sender), IsFromMe=from_me, IsGroup=chat.endswith("@g.us"),
        SenderAlt=EMPTY_JID, RecipientAlt=EMPTY_JID, BroadcastListOwner=EMPTY_JID,
    )  # fmt: skip


def message_event(
    chat: str,
    sender: str,
    message: WAMessage,
    *,
    id: str,
    from_me: bool = False,
    name: str = "",
    ts: int = 1_700_000_000,
) -> N.Message:
    """A neonize ``Message`` event with every required field filled."""
    info = N.MessageInfo(
        MessageSource=source(chat, sender, from_me=from_me), ID=id, ServerID=0, Type="text", Pushname=name,
        Timestamp=ts, Category="", Multicast=False, MediaType="", Edit="",
    )  # fmt: skip
    flags: tuple[str, ...] = (
        "IsEphemeral",
        "IsViewOnce",
        "IsViewOnceV2",
        "IsViewOnceV2Extension",
        "IsDocumentWithCaption",
    )
    flags += ("IsLottieSticker", "IsEdit")
    return N.Message(
        Info=info, Message=message, UnavailableRequestID="", RetryCount=0, **dict.fromkeys(flags, False)
    )


def receipt_event(chat: str, sender: str, ids: list[str], *, kind: int = N.Receipt.READ) -> N.Receipt:
    return N.Receipt(MessageSource=source(chat, sender), MessageIDs=ids, Timestamp=1_700_000_100, Type=kind)


def typing_event(chat: str, sender: str, *, active: bool) -> N.ChatPresence:
    state = N.ChatPresence.COMPOSING if active else N.ChatPresence.PAUSED
    return N.ChatPresence(MessageSource=source(chat, sender), State=state, Media=N.ChatPresence.TEXT)


def echo_whatsmeow() -> FakeWhatsmeow:
    """A ``FakeWhatsmeow`` whose other person answers every text with ``echo: <text>`` (for the child
    process of ``isolate.py`` in tests, where no test code can reach the fake)."""
    fake = FakeWhatsmeow()
    send = fake.SendMessage

    async def send_and_echo(uuid: bytes, to: bytes, tl: int, msg: bytes, ml: int) -> bytes:
        answer = await send(uuid, to, tl, msg, ml)
        sent = fake.sent[-1]
        if sent.message.conversation:
            reply = WAMessage(conversation=f"echo: {sent.message.conversation}")
            event = message_event(sent.chat, sent.chat, reply, id=f"ECHO-{sent.id}")
            asyncio.get_running_loop().call_soon(fake.emit, event, uuid)
        return answer

    fake.SendMessage = send_and_echo  # type: ignore[method-assign,assignment]
    return fake
