"""A wire-level fake of Microsoft Teams for work accounts: the identity platform msal signs in against and
the Microsoft Graph v1.0 endpoints the Teams connector calls, over https with a throwaway certificate.

    async with FakeTeams() as fake:                  # 127.0.0.1, port 0; fake.ca_file trusts its certificate
        alice = fake.add_user("alice", "Alice")
        bob = fake.add_user("bob", "Bob")
        chat = fake.add_chat([alice, bob])           # a 1:1 chat ("oneOnOne"); three or more: "group"
        fake.post_as(bob, chat, "<p>hello</p>")      # the other person writes (the fake pushes like Graph)
        fake.identity.approve_pending(alice)         # the person enters the device code in a browser
        fake.throttle("/chats", status=429, retry_after=2, count=1)
        fake.identity.revoke(alice)                  # refreshes now fail with invalid_grant (AADSTS50173)

It keeps users, chats, teams, channels, members and messages; answers in Graph's JSON shapes
(``@odata.nextLink``, ``@odata.deltaLink``, ``{"error":{"code","message","innerError"}}``); checks every
Graph request's path, query and body against the vendored subset of Graph's published description
(``data/teams/graph-v1.0-subset.json``, made by ``scripts/teams_graph_subset.py``; MIT, see ``LICENSE``
there), refusing what Graph would refuse with 400 and recording it in ``fake.refused``; posts change
notifications with the ``validationToken`` handshake to subscribers; and records every request in
``fake.requests``. ``python -m msgr_bridge.testing.fakes.teams`` runs it standalone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .teams_drive import Drives
from .teams_graph import Graph, graph_error
from .teams_identity import Identity, make_certificate, server_ssl_context

DATA = Path(__file__).parent / "data" / "teams"
SPEC_FILE = DATA / "graph-v1.0-subset.json"


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    at: float
    user: str | None = None


@dataclass
class Throttle:
    prefix: str
    status: int
    retry_after: float
    count: int


class SpecChecker:
    """Matches a Graph request against the vendored OpenAPI subset; ``check`` returns what is wrong."""

    def __init__(self, spec_file: Path = SPEC_FILE) -> None:
        import jsonschema

        self.spec = json.loads(spec_file.read_text())
        self.routes: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for path, ops in self.spec["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
            for method, op in ops.items():
                self.routes.append((pattern, method, op))
        self._validator = jsonschema.Draft7Validator
        self._components = self.spec["components"]

    def check(self, method: str, path: str, query: dict[str, str], body: Any) -> str | None:
        method = method.lower()
        matches = [(op, m) for pattern, m, op in self.routes if pattern.match(path)]
        if not matches:
            return f"Resource not found for the segment '{path}'."
        op = next((op for op, m in matches if m == method), None)
        if op is None:
            return f"No HTTP resource was found that matches the request URI and method {method.upper()}."
        allowed = {p["name"] for p in op.get("parameters", ()) if p["in"] == "query"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            return f"Query option '{unknown[0]}' is not allowed for this resource."
        request_body = op.get("requestBody")
        if request_body is not None:
            schema = request_body["content"]["application/json"]["schema"]
            if body is None and request_body.get("required"):
                return "Empty Payload. JSON content expected."
            if body is not None:
                validator = self._validator({**schema, "components": self._components})
                error = next(iter(validator.iter_errors(body)), None)
                if error is not None:
                    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
                    return f"Invalid request body at {where}: {error.message}"
        return None


@dataclass
class FakeTeams:
    """The fake tenant: its identity platform and Graph, served on one https port."""

    tenant_id: str = "00000000-0000-4000-8000-000000000c0f"
    client_id: str = "11111111-2222-4333-8444-555555555555"
    token_lifetime_s: float = 3600.0
    host: str = "127.0.0.1"
    port: int = 0
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    chats: dict[str, dict[str, Any]] = field(default_factory=dict)
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    """access token -> (user id, expiry as time.time())"""
    grants: list[str] = field(default_factory=list)
    """The user of every token the identity platform issued, in order."""
    requests: list[Recorded] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    """(method, path, why) of every request the published description refused."""
    throttles: list[Throttle] = field(default_factory=list)
    slowdowns: list[tuple[str, str, float, int]] = field(default_factory=list)
    watchers: list[Any] = field(default_factory=list)
    """Callables given (conversation id, chatMessage) for every message posted (the other person's eyes)."""
    notifications_sent: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[tuple[str, int | None]] = field(default_factory=list)
    """(URL, the status it answered) of every notification delivered."""
    max_recorded: int = 100_000

    def __post_init__(self) -> None:
        self.identity = Identity(self)
        self.drives = Drives(self)
        self.graph = Graph(self)
        self.checker = SpecChecker()
        self.base_url = ""
        self.ca_file: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self._cert: tuple[Path, Path] = (Path(), Path())
        self._clock_ms = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: Any = None
        """One aiohttp session for every notification (as Graph keeps its connections)."""

    # --- serving -------------------------------------------------------------------------------------

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    async def start(self) -> FakeTeams:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="teams-fake-")
            self._cert = make_certificate(Path(self._tmp.name))
            self.ca_file = self._cert[0]
        app = web.Application(client_max_size=4 * 1024 * 1024)  # file bytes are read as a stream
        app.add_routes(self.identity.routes())
        app.add_routes(self.graph.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=server_ssl_context(*self._cert))
        await site.start()
        server = site._server
        assert server is not None and getattr(server, "sockets", None)
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"https://{self.host}:{self.port}"
        return self

    async def pause(self) -> None:
        """Stop serving (connections drop) but keep the tenant, the port and the certificate:
        ``start()`` serves the same state again, as a Graph outage that ends would."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.pause()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> FakeTeams:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- recording and faults ------------------------------------------------------------------------

    def record(self, request: web.Request, user: str | None = None) -> None:
        if len(self.requests) >= self.max_recorded:
            del self.requests[: self.max_recorded // 10]
        self.requests.append(Recorded(request.method, request.path, dict(request.query), time.time(), user))

    def graph_requests(self, since: float = 0.0) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1.0/") and r.at >= since]

    def throttle(
        self, prefix: str = "/", *, status: int = 429, retry_after: float = 1, count: int = 1
    ) -> None:
        """The next ``count`` Graph requests under ``prefix`` (after ``/v1.0``) get ``status`` with
        ``Retry-After`` (429 TooManyRequests or 503 ServiceUnavailable)."""
        self.throttles.append(Throttle(prefix, status, retry_after, count))

    def slow(self, prefix: str, seconds: float, *, method: str = "POST", count: int = 1) -> None:
        """The next ``count`` ``method`` requests under ``prefix`` are carried out at once but answered
        ``seconds`` later (a slow network: other requests see their effect before the caller does)."""
        self.slowdowns.append((prefix, method, seconds, count))

    def take_slowdown(self, method: str, path: str) -> float:
        for index, (prefix, wanted, seconds, count) in enumerate(self.slowdowns):
            if count > 0 and method == wanted and path.startswith(prefix):
                self.slowdowns[index] = (prefix, wanted, seconds, count - 1)
                return seconds
        return 0.0

    def take_throttle(self, path: str) -> web.Response | None:
        for rule in self.throttles:
            if rule.count > 0 and path.startswith(rule.prefix):
                rule.count -= 1
                code = "TooManyRequests" if rule.status == 429 else "ServiceUnavailable"
                response = graph_error(rule.status, code, "Too many requests. Please retry later.")
                response.headers["Retry-After"] = str(int(rule.retry_after) if rule.retry_after >= 1 else 1)
                return response
        return None

    # --- the tenant's contents -----------------------------------------------------------------------

    def now(self) -> str:
        """The next timestamp: wall time in ms, strictly increasing, so ``gt`` filters never tie."""
        ms = max(int(time.time() * 1000), self._clock_ms + 1)
        self._clock_ms = ms
        return iso(dt.datetime.fromtimestamp(ms / 1000, dt.UTC))

    def next_id(self) -> str:
        self.now()
        return str(self._clock_ms)

    def add_user(self, key: str, name: str) -> str:
        user_id = (
            f"{abs(hash(key)) % 10**8:08d}-{len(self.users):04d}-4000-8000-{abs(hash(name)) % 10**12:012d}"
        )
        self.users[user_id] = {
            "id": user_id,
            "displayName": name,
            "userPrincipalName": f"{key}@contoso.example",
            "mail": f"{key}@contoso.example",
        }
        if self.identity.default_user is None:
            self.identity.default_user = user_id
        return user_id

    def add_chat(self, members: list[str], topic: str | None = None) -> str:
        kind = "oneOnOne" if len(members) == 2 and topic is None else "group"
        suffix = "unq.gbl.spaces" if kind == "oneOnOne" else "thread.v2"
        chat_id = f"19:{'_'.join(m[:8] for m in members)}{len(self.chats)}@{suffix}"
        self.chats[chat_id] = {
            "id": chat_id,
            "topic": topic,
            "chatType": kind,
            "createdDateTime": self.now(),
            "members": list(members),
            "messages": [],
            "read": {},
        }
        return chat_id

    def add_team(self, name: str, members: list[str], channels: list[str]) -> tuple[str, list[str]]:
        team_id = f"{len(self.teams):08d}-0000-4000-8000-00000000{len(self.teams):04d}"
        chans = {
            f"19:{team_id[:8]}c{i}@thread.tacv2": {
                "id": f"19:{team_id[:8]}c{i}@thread.tacv2",
                "displayName": c,
                "messages": [],
            }
            for i, c in enumerate(channels)
        }
        self.teams[team_id] = {
            "id": team_id,
            "displayName": name,
            "members": list(members),
            "channels": chans,
        }
        return team_id, list(chans)

    def message(self, user_id: str, html: str, **extra: Any) -> dict[str, Any]:
        stamp = self.now()
        user = self.users[user_id]
        return {
            "id": str(self._clock_ms),
            "replyToId": None,
            "etag": str(self._clock_ms),
            "messageType": "message",
            "createdDateTime": stamp,
            "lastModifiedDateTime": stamp,
            "lastEditedDateTime": None,
            "deletedDateTime": None,
            "subject": None,
            "summary": None,
            "importance": "normal",
            "locale": "en-us",
            "webUrl": None,
            "policyViolation": None,
            "eventDetail": None,
            "from": {
                "application": None,
                "device": None,
                "user": {
                    "@odata.type": "#microsoft.graph.teamworkUserIdentity",
                    "id": user_id,
                    "displayName": user["displayName"],
                    "userIdentityType": "aadUser",
                    "tenantId": self.tenant_id,
                },
            },
            "body": {"contentType": "html", "content": html},
            "attachments": [],
            "mentions": [],
            "reactions": [],
            "messageHistory": [],
            **extra,
        }

    def post_as(self, user_id: str, chat_id: str, html: str, **extra: Any) -> dict[str, Any]:
        """``user_id`` writes ``html`` into a chat; subscribers are notified. Returns the chatMessage."""
        msg = self.message(user_id, html, chatId=chat_id, channelIdentity=None, **extra)
        self.chats[chat_id]["messages"].append(msg)
        for watch in self.watchers:
            watch(chat_id, msg)
        self.notify(f"chats('{chat_id}')/messages('{msg['id']}')", "created", msg)
        return msg

    def post_channel_as(
        self, user_id: str, team_id: str, channel_id: str, html: str, reply_to: str | None = None
    ) -> dict[str, Any] | None:
        """``user_id`` posts into a channel, or replies in the thread of ``reply_to`` (None: no such root)."""
        channel = self.teams[team_id]["channels"][channel_id]
        ident = {"teamId": team_id, "channelId": channel_id}
        msg = self.message(user_id, html, chatId=None, channelIdentity=ident)
        if reply_to is None:
            channel["messages"].append(msg)
            self.notify_channel(team_id, channel_id, msg, "created")
            return msg
        root = next((x for x in channel["messages"] if x["id"] == reply_to), None)
        if root is None:
            return None
        msg["replyToId"] = root["id"]
        root.setdefault("_replies", []).append(msg)
        self.touch(root)  # [U] a reply modifies its thread's root, so the channel's delta returns the root
        self.notify_channel(team_id, channel_id, msg, "created")
        return msg

    def notify_channel(self, team_id: str, channel_id: str, msg: dict[str, Any], change: str) -> None:
        where = f"teams('{team_id}')/channels('{channel_id}')/messages"
        if msg.get("replyToId"):
            self.notify(f"{where}('{msg['replyToId']}')/replies('{msg['id']}')", change, msg)
        else:
            self.notify(f"{where}('{msg['id']}')", change, msg)

    def find_channel_message(self, team_id: str, channel_id: str, target: str) -> dict[str, Any] | None:
        """A root message by id, or a reply by ``<root id>/<reply id>``."""
        channel = self.teams[team_id]["channels"][channel_id]
        root_id, _, reply_id = target.partition("/")
        root = next((x for x in channel["messages"] if x["id"] == root_id), None)
        if root is None or not reply_id:
            return root
        return next((x for x in root.get("_replies", []) if x["id"] == reply_id), None)

    def find(self, chat_id: str, message_id: str) -> dict[str, Any] | None:
        return next((m for m in self.chats[chat_id]["messages"] if m["id"] == message_id), None)

    def touch(self, msg: dict[str, Any]) -> None:
        msg["lastModifiedDateTime"] = self.now()
        msg["etag"] = str(self._clock_ms)

    # --- change notifications ------------------------------------------------------------------------

    def notify(self, resource: str, change: str, msg: dict[str, Any]) -> None:
        """Post a change notification to every live subscription covering ``resource`` (an expired one
        gets nothing, as in Graph)."""
        now = dt.datetime.now(dt.UTC)
        for sub in list(self.subscriptions.values()):
            if dt.datetime.fromisoformat(sub["expirationDateTime"]) <= now:
                continue
            if change in sub["changeType"].split(",") and self._covers(sub["resource"], resource):
                item = {
                    "subscriptionId": sub["id"],
                    "changeType": change,
                    "clientState": sub.get("clientState"),
                    "subscriptionExpirationDateTime": sub["expirationDateTime"],
                    "tenantId": self.tenant_id,
                    "resource": resource,
                    "resourceData": {
                        "id": msg["id"],
                        "@odata.type": "#Microsoft.Graph.chatMessage",
                        "@odata.id": resource,
                    },
                }
                self.spawn(self.deliver(sub["notificationUrl"], {"value": [item]}))

    @staticmethod
    def _covers(subscribed: str, resource: str) -> bool:
        if m := re.match(r"^/?chats/([^/]+)/messages$", subscribed):
            return resource.startswith(f"chats('{m.group(1)}')")
        if m := re.match(r"^/?teams/([^/]+)/channels/([^/]+)/messages$", subscribed):
            return resource.startswith(f"teams('{m.group(1)}')/channels('{m.group(2)}')")
        return False

    def lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle notification: ``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``."""
        sub = self.subscriptions[subscription_id]
        item = {
            "subscriptionId": sub["id"],
            "lifecycleEvent": event,
            "clientState": sub.get("clientState"),
            "subscriptionExpirationDateTime": sub["expirationDateTime"],
            "tenantId": self.tenant_id,
            "resource": sub["resource"],
        }
        if event == "subscriptionRemoved":
            del self.subscriptions[subscription_id]
        url = sub.get("lifecycleNotificationUrl") or sub["notificationUrl"]
        self.spawn(self.deliver(url, {"value": [item]}))

    async def deliver(self, url: str, body: dict[str, Any]) -> None:
        """POST one notification; the answer's status is kept in ``deliveries`` (None: unreachable)."""
        import aiohttp

        self.notifications_sent.append(body)
        status: int | None = None
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._http.post(url, json=body) as resp:
                status = resp.status
        self.deliveries.append((url, status))

    async def validate_endpoint(self, url: str) -> bool:
        """Graph's handshake: POST ``url?validationToken=…``; the endpoint must echo it in text/plain."""
        import secrets

        import aiohttp

        token = (
            f"Validation: Testing client application reachability for subscription Request-Id: "
            f"{secrets.token_hex(8)}"
        )
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                resp = await http.post(url, params={"validationToken": token})
                text = await resp.text()
                return resp.status == 200 and text == token and resp.content_type == "text/plain"
        except (aiohttp.ClientError, TimeoutError):
            return False


async def _main() -> None:  # pragma: no cover - a tool for people trying the bridge offline
    fake = FakeTeams()
    await fake.start()
    alice, bob = fake.add_user("alice", "Alice"), fake.add_user("bob", "Bob")
    chat = fake.add_chat([alice, bob])
    fake.post_as(bob, chat, "<p>Hello from the Teams fake</p>")
    print(f"Teams fake on {fake.base_url}", flush=True)
    print(f"  CA file (trust it): {fake.ca_file}")
    print(f"  [networks.teams] client_id = {fake.client_id!r}, tenant = {fake.tenant_id!r},")
    print(
        f"    authority_host = {fake.base_url!r}, graph_url = {fake.graph_url!r}, ca_file = '{fake.ca_file}'"
    )
    print("  device codes are approved for alice automatically; Ctrl-C stops", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            fake.identity.approve_pending(alice)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
    finally:
        await fake.stop()  # removes the throwaway certificate and key


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_main())
