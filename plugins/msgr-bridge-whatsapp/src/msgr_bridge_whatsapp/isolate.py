"""``isolate = true``: the neonize client (a Go runtime loaded into the process) runs in a child process.

``ChildClient`` has the same calls as ``client.WaClient``; each is one JSON line to the child
(``python -m msgr_bridge_whatsapp.isolate``) and one answer back, protobufs and bytes as base64. The child
runs a ``WaClient`` and writes neonize's events (``{"event": name, "data": <protobuf>}``) and QR codes as
they come. Its own stdout is moved to stderr first, so nothing Go or neonize prints can break the
protocol; it dies with its parent (``PR_SET_PDEATHSIG``). When the child exits or is killed, every
pending call fails with ``TransientError`` and ``ended()`` says so: the connector's ``subscribe`` raises,
the account turns ``transient_disconnect`` and the supervisor starts it again (a new child), while the
bridge and its other accounts go on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from msgr_bridge.errors import BridgeError, PermanentError, TransientError

from .client import EVENTS, GroupInfo, MediaType, OnEvent, OnQr, SendResponse, UploadResponse, WAMessage
from .client import Contact as ContactProto

LINE_LIMIT = 512 * 1024 * 1024
"""Longest line either side reads: a 100 MB file as base64 plus its envelope fits."""
FAKE_ENV = "MSGR_BRIDGE_WHATSAPP_TEST_GO"
"""Tests only: ``echo`` makes the child use ``testing.FakeWhatsmeow`` answering every send (never set it)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    return base64.b64decode(str(text))


class ChildClient:
    def __init__(self, db_path: str, device_name: str, on_event: OnEvent, on_qr: OnQr | None = None) -> None:
        self.db_path, self.device_name = db_path, device_name
        self.on_event, self.on_qr = on_event, on_qr
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = 0
        self.exit: BaseException | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msgr_bridge_whatsapp.isolate", self.db_path, self.device_name,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
        )  # fmt: skip
        self.reader = asyncio.create_task(self._read())
        await self._call("start")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        try:
            while line := await self.process.stdout.readline():
                await self._line(json.loads(line))
        except (ValueError, asyncio.LimitOverrunError) as exc:
            self.exit = TransientError(f"the WhatsApp child process sent garbage: {exc}")
        finally:
            code = await self.process.wait()
            self.exit = self.exit or TransientError(f"the WhatsApp child process ended (exit code {code})")
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(self.exit)
            self.pending.clear()
            if self.process is not None:  # not stopped by us: the connector must hear of it at once
                await self.on_event("ended", None)

    async def _line(self, message: dict[str, Any]) -> None:
        if "event" in message:
            name = str(message["event"])
            await self.on_event(name, EVENTS[name].FromString(_unb64(message["data"])))
        elif "qr" in message:
            if self.on_qr is not None:
                await self.on_qr(str(message["qr"]))
        else:
            future = self.pending.pop(int(message["id"]), None)
            if future is None or future.done():
                return
            if "error" in message:
                kind = TransientError if message.get("transient") else PermanentError
                future.set_exception(kind(str(message["error"])))
            else:
                future.set_result(message.get("result"))

    async def _call(self, op: str, **args: Any) -> Any:
        process = self.process
        if process is None or process.stdin is None or self.exit is not None:
            raise self.exit or TransientError("the WhatsApp child process is not running")
        self.ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.ids] = future
        try:
            process.stdin.write(json.dumps({"id": self.ids, "op": op, "args": args}).encode() + b"\n")
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.pending.pop(self.ids, None)
            raise TransientError("the WhatsApp child process is gone") from exc
        return await future

    def ended(self) -> BaseException | None:
        return self.exit

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(Exception):
                assert process.stdin is not None
                process.stdin.write(b'{"id": 0, "op": "exit", "args": {}}\n')
                await process.stdin.drain()
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self.reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.reader, 5)
        if process.stdin is not None:
            process.stdin.close()
        transport = getattr(process, "_transport", None)  # its pipes, also after a crash
        if transport is not None:
            transport.close()

    # --- the calls of WaClient ----------------------------------------------------------------------

    async def send(self, chat: str, message: WAMessage) -> SendResponse:
        raw = await self._call("send", chat=chat, message=_b64(message.SerializeToString()))
        return SendResponse.FromString(_unb64(raw))

    async def upload(self, data: bytes, media_type: MediaType) -> UploadResponse:
        return UploadResponse.FromString(
            _unb64(await self._call("upload", data=_b64(data), type=media_type.value))
        )

    async def download(self, message: WAMessage) -> bytes:
        return _unb64(await self._call("download", message=_b64(message.SerializeToString())))

    async def mark_read(self, chat: str, sender: str, message_ids: Sequence[str]) -> None:
        await self._call("mark_read", chat=chat, sender=sender, ids=list(message_ids))

    async def typing(self, chat: str, active: bool) -> None:
        await self._call("typing", chat=chat, active=active)

    async def groups(self) -> Sequence[GroupInfo]:
        return [GroupInfo.FromString(_unb64(g)) for g in await self._call("groups")]

    async def contacts(self) -> Sequence[ContactProto]:
        return [ContactProto.FromString(_unb64(c)) for c in await self._call("contacts")]

    async def pair_phone(self, phone: str) -> str:
        return str(await self._call("pair_phone", phone=phone))


# --- the child ----------------------------------------------------------------------------------------


async def _serve(db_path: str, device_name: str, out: Any) -> None:
    from . import client as wire

    if os.environ.get(FAKE_ENV) == "echo":
        from .testing import echo_whatsmeow

        wire.GO_LIBRARY = echo_whatsmeow()

    def write(message: dict[str, Any]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    async def on_event(name: str, event: Any) -> None:
        write({"event": name, "data": _b64(event.SerializeToString())})

    async def on_qr(code: str) -> None:
        write({"qr": code})

    wa = wire.WaClient(db_path, device_name, on_event, on_qr)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin.buffer)
    calls: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
        "start": lambda a: wa.start(),
        "send": lambda a: _send(wa, a),
        "upload": lambda a: _upload(wa, a),
        "download": lambda a: _download(wa, a),
        "mark_read": lambda a: wa.mark_read(a["chat"], a["sender"], a["ids"]),
        "typing": lambda a: wa.typing(a["chat"], bool(a["active"])),
        "groups": lambda a: _list(wa.groups()),
        "contacts": lambda a: _list(wa.contacts()),
        "pair_phone": lambda a: wa.pair_phone(str(a["phone"])),
    }
    while line := await stdin.readline():
        request = json.loads(line)
        if request["op"] == "exit":
            break
        try:
            result = await calls[request["op"]](request.get("args") or {})
            write({"id": request["id"], "result": result})
        except BridgeError as exc:
            write({"id": request["id"], "error": exc.message, "transient": isinstance(exc, TransientError)})
        except Exception as exc:  # a bug or a neonize surprise: reported to the caller, the child goes on
            write({"id": request["id"], "error": f"{type(exc).__name__}: {exc}", "transient": False})
    await wa.stop()


async def _send(wa: Any, args: dict[str, Any]) -> str:
    response = await wa.send(args["chat"], WAMessage.FromString(_unb64(args["message"])))
    return _b64(response.SerializeToString())


async def _upload(wa: Any, args: dict[str, Any]) -> str:
    response = await wa.upload(_unb64(args["data"]), MediaType(int(args["type"])))
    return _b64(response.SerializeToString())


async def _download(wa: Any, args: dict[str, Any]) -> str:
    return _b64(await wa.download(WAMessage.FromString(_unb64(args["message"]))))


async def _list(items: Any) -> list[str]:
    return [_b64(item.SerializeToString()) for item in await items]


def main() -> None:
    with contextlib.suppress(Exception):  # Linux: die with the bridge
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever Go or neonize prints goes to stderr, never into the protocol
    asyncio.run(_serve(sys.argv[1], sys.argv[2], out))


if __name__ == "__main__":
    main()
