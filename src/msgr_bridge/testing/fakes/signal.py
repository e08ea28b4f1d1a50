"""A wire-level fake of bbernhard's signal-cli-rest-api (json-rpc mode by default, ``normal`` on request).

    async with SignalFake() as fake:                  # aiohttp on 127.0.0.1, a free port
        fake.link("+15550001")                        # a number already linked on the REST API
        bob = fake.person("+15550002", "Bob")
        ts = fake.peer_message(bob, "+15550001", "hi")   # Bob writes; pushed over the websocket
        ... fake.base_url, fake.sent, fake.requests

It serves the REST paths a connector uses, checked against the vendored upstream ``swagger.json`` (an
unknown path, parameter or body field is a 400 and is recorded in ``violations``), and its answers and
envelopes are checked against the same description. ``/v1/receive/{number}`` is a websocket in json-rpc
mode (envelopes with no listener are dropped, as upstream does) and a draining GET in normal mode.
Faults: ``fail`` (any status and body), ``rate_limit`` (429/413, with challenge tokens for a captcha or
proof-of-work challenge, worded as signal-cli-rest-api words them), ``unlink`` (the phone removed the
device: "Specified account does not exist"), ``drop_websockets``, ``stop``/``start`` on the same port.

``python -m msgr_bridge.testing.fakes.signal --port 8080 --auto-link +15550001`` runs it standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno
from aiohttp import WSMsgType, web

from .signal_model import FakeGroup, PendingLink, Person, SignalModel, keep_last
from .signal_peers import PeerActions
from .signal_styles import mention_error, parse_styled
from .swagger import Operation, SwaggerSpec

SWAGGER = SwaggerSpec.load(Path(__file__).parent / "data" / "signal" / "swagger.json")
UNKNOWN_ACCOUNT = "Specified account does not exist"
RATE_LIMITED = (
    "Failed to send message due to rate limiting. Use the attached challenge tokens to lift the rate "
    "limit restrictions via the '/v1/accounts/{number}/rate-limit-challenge' endpoint."
)
NOT_WEBSOCKET = (
    "websocket: the client is not using the websocket protocol: "
    "'upgrade' token not found in 'Connection' header"
)


@dataclass
class Fault:
    method: str
    path_prefix: str
    status: int
    body: Any
    times: int


class SignalFake(PeerActions):
    def __init__(self, *, mode: str = "json-rpc", port: int = 0, auto_link: str | None = None) -> None:
        self.model = SignalModel()
        self.mode = mode
        self.port = port
        self.auto_link = auto_link
        self.sync_echo = False
        """When true, an account's own sends come back to it as sync messages (what a second device sees)."""
        self.requests: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.dropped: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        self._runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> SignalFake:
        app = web.Application(client_max_size=150 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Stop serving (connections drop); the model survives, and ``start`` resumes on the same port."""
        self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SignalFake:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the model, as tests drive it ---------------------------------------------------------------------

    def link(self, number: str, name: str | None = None) -> Person:
        """A number linked on the REST API (as if its QR code had been scanned earlier)."""
        self.model.link_account(number, name)
        return self.model.accounts[number].person

    def person(self, number: str, name: str | None = None) -> Person:
        return self.model.person(number, name)

    def group(self, name: str, members: list[str]) -> FakeGroup:
        return self.model.add_group(name, members)

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.model.sent

    def scan(self, number: str, name: str | None = None) -> None:
        """The phone of ``number`` scans the newest QR code shown: the device is linked."""
        pending = next((p for p in reversed(self.model.links) if p.number is None), None)
        if pending is None:
            raise AssertionError("no QR code was shown to scan")
        pending.number = number
        self.model.link_account(number, name, pending.device_name)

    def unlink(self, number: str) -> None:
        """The person removed the linked device in their phone's settings."""
        self.model.accounts[number].linked = False

    def fail(self, method: str, path_prefix: str, status: int, body: Any, *, times: int = 1) -> None:
        self.faults.append(Fault(method.upper(), path_prefix, status, body, times))

    def rate_limit(
        self, account: str, *, times: int = 1, status: int = 429, challenge_tokens: list[str] | None = None
    ) -> None:
        """The next sends fail as signal-cli-rest-api reports a rate limit (with challenge tokens: a captcha
        or proof-of-work challenge the person must solve)."""
        body = {"error": RATE_LIMITED, "challenge_tokens": challenge_tokens or [], "account": account}
        self.fail("POST", "/v2/send", status, body, times=times)

    def drop_websockets(self) -> None:
        for queues in self._listeners.values():
            for queue in queues:
                queue.put_nowait(None)

    def listening(self, number: str) -> int:
        return len(self._listeners.get(number, ()))

    def deliver(self, account: str, message: dict[str, Any]) -> None:
        problems = SWAGGER.check_value({"$ref": "#/definitions/data.Message"}, message, "envelope")
        if problems:
            raise AssertionError(f"the fake built an envelope the API description refuses: {problems}")
        if self.mode != "json-rpc":
            self.model.inbox(account).append(message)
            return
        queues = self._listeners.get(account)
        if not queues:
            self.dropped.append(message)  # upstream: "Couldn't send message to golang channel"
            keep_last(self.dropped)
            return
        for queue in queues:
            queue.put_nowait(message)

    # --- HTTP ------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        op = SWAGGER.operation(request.method, path)
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._error(400, "Couldn't process request - invalid request")
        keep_last(self.requests)
        keep_last(self.violations)
        self.requests.append(
            {"method": request.method, "path": path, "query": dict(request.query), "body": body}
        )
        if op is None:
            self.violations.append(f"{request.method} {path}: not in the API description")
            return web.json_response({"error": "404 page not found"}, status=404)
        problems = SWAGGER.check_request(op, request.query, body)
        if problems:
            self.violations += problems
            return self._error(400, "Couldn't process request - invalid request: " + "; ".join(problems))
        for fault in self.faults:
            if fault.times > 0 and fault.method == request.method and path.startswith(fault.path_prefix):
                fault.times -= 1
                return web.json_response(fault.body, status=fault.status)
        number = op.path_params.get("number")
        if number is not None and not self.model.linked(_unquote(number)):
            return self._error(400, UNKNOWN_ACCOUNT)
        name = _HANDLERS.get((op.method, op.template))
        if name is None:
            return self._error(501, f"the fake does not serve {op.method} {op.template}")
        handler = getattr(self, name)
        response: web.StreamResponse = await handler(request, op, body)
        return response

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def _json(self, op: Operation, status: int, value: Any) -> web.Response:
        schema = op.response_schema(status)
        if schema is not None:
            self.violations += [f"response: {p}" for p in SWAGGER.check_value(schema, value, op.template)]
        return web.json_response(value, status=status)

    async def _about(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        about = {"versions": ["v1", "v2"], "build": 2, "mode": self.mode, "version": "0.97-fake",
                 "capabilities": {"v2/send": ["quotes", "mentions"]}}  # fmt: skip
        return self._json(op, 200, about)

    async def _accounts(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        if self.auto_link and self.model.links and not self.model.linked(self.auto_link):
            self.scan(self.auto_link)
        return self._json(op, 200, [n for n, a in self.model.accounts.items() if a.linked])

    def _new_link(self, request: web.Request) -> str:
        key = base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()
        uri = f"sgnl://linkdevice?uuid={uuid.uuid4().hex[:22]}&pub_key={key}"
        self.model.links.append(PendingLink(uri, request.query.get("device_name", "")))
        return uri

    async def _qrcode(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        out = io.BytesIO()
        segno.make(self._new_link(request), error="m").save(out, kind="png", scale=4)
        return web.Response(body=out.getvalue(), content_type="image/png")

    async def _qrcode_raw(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        return self._json(op, 200, {"device_link_uri": self._new_link(request)})

    async def _contacts(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        return self._json(op, 200, self.model.contact_entries(_unquote(op.path_params["number"])))

    async def _groups(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        return self._json(op, 200, self.model.group_entries(_unquote(op.path_params["number"])))

    async def _attachment(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        item = self.model.attachments.get(op.path_params["attachment"])
        if item is None:
            return self._error(400, "Couldn't find attachment")
        return web.Response(body=item.data, content_type="application/octet-stream")

    async def _receive(self, request: web.Request, op: Operation, body: Any) -> web.StreamResponse:
        number = _unquote(op.path_params["number"])
        if self.mode != "json-rpc":
            inbox = self.model.inbox(number)
            limit = int(request.query.get("max_messages") or 0) or len(inbox)
            drained = [inbox.popleft() for _ in range(min(limit, len(inbox)))]
            return web.json_response(drained)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._error(400, NOT_WEBSOCKET)
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._listeners.setdefault(number, set()).add(queue)
        reader = asyncio.create_task(_read_until_closed(ws))
        try:
            while not ws.closed:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                item = getter.result()
                if item is None:
                    break
                await ws.send_str(json.dumps(item))
        finally:
            self._listeners[number].discard(queue)
            reader.cancel()
            await ws.close()
        return ws

    async def _send(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        account = str(body["number"])
        if not self.model.linked(account):
            return self._error(400, UNKNOWN_ACCOUNT)
        for recipient in body["recipients"]:
            if self._resolve(recipient) is None:
                return self._error(400, f'Failed to send message: Unregistered user "{recipient}"')
        try:
            files = [_decode_attachment(item) for item in body.get("base64_attachments") or []]
        except ValueError as exc:
            return self._error(400, str(exc))
        text, styles = str(body.get("message", "")), list[str]()
        if body.get("text_mode") == "styled":
            text, styles = parse_styled(text)
        for mention in body.get("mentions") or []:
            said = mention_error(text, mention, self._resolve(str(mention.get("author"))) is not None)
            if said is not None:
                return self._error(400, said)
        ts = self.model.timestamp()
        self.record_send(account, {**body, "message": text}, files, ts, styles=styles)
        return self._json(op, 201, {"timestamp": str(ts)})

    async def _remote_delete(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        ts = self.model.timestamp()
        account = _unquote(op.path_params["number"])
        self.record_action(account, "delete", body["recipient"], target=body["timestamp"], timestamp=ts)
        return self._json(op, 201, {"timestamp": str(ts)})

    async def _reaction(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        account = _unquote(op.path_params["number"])
        remove = request.method == "DELETE"
        self.record_action(
            account,
            "reaction",
            body["recipient"],
            emoji=body.get("reaction"),
            target_author=body["target_author"],
            target=body["timestamp"],
            remove=remove,
        )
        return web.Response(status=204)

    async def _receipt(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        account = _unquote(op.path_params["number"])
        self.record_action(account, "receipt", body["recipient"], receipt_type=body["receipt_type"],
                           target=body["timestamp"])  # fmt: skip
        return web.Response(status=204)

    async def _typing(self, request: web.Request, op: Operation, body: Any) -> web.Response:
        account = _unquote(op.path_params["number"])
        self.record_action(account, "typing", body["recipient"], active=request.method == "PUT")
        return web.Response(status=204)


_HANDLERS = {
    ("GET", "/v1/about"): "_about",
    ("GET", "/v1/accounts"): "_accounts",
    ("GET", "/v1/qrcodelink"): "_qrcode",
    ("GET", "/v1/qrcodelink/raw"): "_qrcode_raw",
    ("GET", "/v1/contacts/{number}"): "_contacts",
    ("GET", "/v1/groups/{number}"): "_groups",
    ("GET", "/v1/attachments/{attachment}"): "_attachment",
    ("GET", "/v1/receive/{number}"): "_receive",
    ("POST", "/v2/send"): "_send",
    ("DELETE", "/v1/remote-delete/{number}"): "_remote_delete",
    ("POST", "/v1/reactions/{number}"): "_reaction",
    ("DELETE", "/v1/reactions/{number}"): "_reaction",
    ("POST", "/v1/receipts/{number}"): "_receipt",
    ("PUT", "/v1/typing-indicator/{number}"): "_typing",
    ("DELETE", "/v1/typing-indicator/{number}"): "_typing",
}


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type == WSMsgType.ERROR:
            return


def _unquote(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


def _decode_attachment(item: str) -> tuple[str, str | None, bytes]:
    """``data:<mime>;filename=<f>;base64,<data>`` (or bare base64) -> (mime, filename, bytes)."""
    mime, filename, data = "application/octet-stream", None, item
    if item.startswith("data:"):
        header, _, data = item.partition(",")
        parts = header[5:].split(";")
        mime = parts[0] or mime
        filename = next((p[9:] for p in parts if p.startswith("filename=")), None)
    try:
        return mime, filename, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Couldn't process request - invalid base64 attachment") from None


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - a developer's tool
    parser = argparse.ArgumentParser(description="Run the signal-cli-rest-api fake on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--mode", choices=["json-rpc", "normal"], default="json-rpc")
    parser.add_argument("--auto-link", metavar="NUMBER", help="link this number once a QR code was fetched")
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = await SignalFake(mode=args.mode, port=args.port, auto_link=args.auto_link).start()
        bob = fake.person("+15550000002", "Bob (fake)")
        print(f"signal-cli-rest-api fake on {fake.base_url} ({args.mode}); contact {bob.number}", flush=True)
        try:
            await asyncio.Event().wait()  # until Ctrl-C
        finally:
            await fake.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
