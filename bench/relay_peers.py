"""The benchmark's networks: for each connector, its real server and "the other person" on it.

A ``Side`` starts the server (or the in-process loopback network), registers the account under test and
the other person, and records when each text from the account under test reaches the other person.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any


class Arrivals:
    """When each text arrived (perf_counter), with waiting."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._changed = asyncio.Event()

    def arrived(self, text: str) -> None:
        self.at.setdefault(text, time.perf_counter())
        self._changed.set()

    async def wait(self, text: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.at:
                self._changed.clear()
                await self._changed.wait()


class Side:
    connector_class: Any
    remote_user_id: str
    conversation_id: str
    settings: dict[str, Any]
    secrets: dict[str, str]

    def __init__(self) -> None:
        self.peer_arrivals = Arrivals()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def peer_send(self, text: str) -> None: ...


class LoopbackSide(Side):
    def __init__(self) -> None:
        super().__init__()
        from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

        LoopbackNetwork.reset("bench")
        self.net = LoopbackNetwork.get("bench")
        self.net.add_user("alice", "Alice", password="pw-a")
        self.net.add_user("bob", "Bob", password="pw-b")
        self.net.create_group("g1", "Group", ["alice", "bob"])
        self.connector_class = LoopbackConnector
        self.remote_user_id, self.conversation_id = "alice", "g1"
        self.settings, self.secrets = {"network": "bench"}, {"password": "pw-a"}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        session = self.net.open_session("bob")

        async def read() -> None:
            while True:
                p = await session.receive()
                if p["type"] == "message" and p["sender"] == "alice":
                    self.peer_arrivals.arrived(p["text"])

        self._reader = asyncio.create_task(read())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()

    async def peer_send(self, text: str) -> None:
        self.net.post("g1", "bob", text)


class XmppSide(Side):
    async def start(self) -> None:
        from msgr_bridge_xmpp.connector import XmppConnector
        from xmpp_peer import Peer

        from msgr_bridge.testing.prosody import start_prosody

        self.server = start_prosody()
        self.remote_user_id = self.server.register("benchme", "benchme-pw")
        self.conversation_id = self.server.register("benchbob", "benchbob-pw")
        self.connector_class = XmppConnector
        self.settings = {**self.server.connection_settings(), "rooms": []}
        self.secrets = {"password": "benchme-pw"}
        self.peer = await Peer(self.server, "benchbob", "benchbob-pw").start()

        def on_message(msg: Any) -> None:
            if msg["from"].bare == self.remote_user_id and msg["body"]:
                self.peer_arrivals.arrived(str(msg["body"]))

        self.peer.client.add_event_handler("message", on_message)

    async def stop(self) -> None:
        await self.peer.stop()
        self.server.cleanup()

    async def peer_send(self, text: str) -> None:
        self.peer.send(self.remote_user_id, text)


class IrcSide(Side):
    """The other person is a raw asyncio IRC client (a handful of lines of protocol is all it needs)."""

    async def start(self) -> None:
        from msgr_bridge_irc import IrcConnector

        from msgr_bridge.testing.ngircd import start_ngircd

        self.server = start_ngircd()
        self.connector_class = IrcConnector
        self.channel = "#bench"
        self.remote_user_id = f"{self.server.host}/benchme"
        self.conversation_id = f"{self.server.host}/{self.channel}"
        self.settings = {"host": self.server.host, "port": self.server.port, "tls": False,
                         "nick": "benchme", "channels": [self.channel]}  # fmt: skip
        self.secrets = {}
        self.reader, self.writer = await asyncio.open_connection(self.server.host, self.server.port)
        self.writer.write(b"NICK benchbob\r\nUSER benchbob 0 * :bench\r\n")
        joined = asyncio.Event()
        self._task = asyncio.create_task(self._read(joined))
        await asyncio.wait_for(joined.wait(), 15)

    async def _read(self, joined: asyncio.Event) -> None:
        while line := (await self.reader.readline()).decode("utf-8", "replace").rstrip("\r\n"):
            parts = line.split(" ", 3)
            if parts[0] == "PING":
                self.writer.write(f"PONG {parts[1]}\r\n".encode())
            elif len(parts) > 1 and parts[1] in ("376", "422"):
                self.writer.write(f"JOIN {self.channel}\r\n".encode())
            elif len(parts) > 1 and parts[1] == "366":
                joined.set()
            elif len(parts) == 4 and parts[1] == "PRIVMSG" and parts[0].startswith(":benchme!"):
                self.peer_arrivals.arrived(parts[3].removeprefix(":"))

    async def stop(self) -> None:
        self._task.cancel()
        self.writer.close()
        self.server.cleanup()

    async def peer_send(self, text: str) -> None:
        self.writer.write(f"PRIVMSG {self.channel} :{text}\r\n".encode())
        await self.writer.drain()


class MatrixSide(Side):
    async def start(self) -> None:
        from matrix_peer import Peer
        from mautrix.types import RoomID
        from msgr_bridge_matrix import MatrixConnector

        from msgr_bridge.testing.synapse import start_synapse

        self.server = start_synapse()
        self.connector_class = MatrixConnector
        self.me = await Peer.create(self.server, "benchme")
        self.other = await Peer.create(self.server, "benchbob")
        self.room = RoomID(await self.other.room_with(self.me, direct=True))
        self.remote_user_id = self.conversation_id = self.me.user_id
        self.conversation_id = str(self.room)
        self.settings = {"homeserver": self.server.base_url, "user_id": self.me.user_id}
        self.secrets = {"password": self.me.password}
        self._task = asyncio.create_task(self._sync())

    async def _sync(self) -> None:
        other = self.other
        while True:
            resp = await other.client.sync(since=other.since, timeout=30_000)
            other.since = resp["next_batch"]
            room = (resp.get("rooms", {}).get("join") or {}).get(self.room) or {}
            for event in (room.get("timeline") or {}).get("events") or []:
                if event.get("type") == "m.room.message" and event.get("sender") == self.me.user_id:
                    self.peer_arrivals.arrived(str(event["content"].get("body", "")))

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.me.close()
        await self.other.close()
        self.server.cleanup()

    async def peer_send(self, text: str) -> None:
        await self.other.client.send_text(self.room, text)


class TelegramSide(Side):
    """The fake Telegram (msgr_bridge.testing.fakes.telegram) in this process: its MTProto server shares the
    event loop (and CPU) with the bridge, so the figures are a floor for the connector, not Telegram's."""

    async def start(self) -> None:
        import os

        from msgr_bridge_telegram import TelegramConnector
        from msgr_bridge_telegram.config import TEST_SERVER_ENV

        from msgr_bridge.testing.fakes.telegram import FakeTelegram

        self.fake = await FakeTelegram().start()
        os.environ[TEST_SERVER_ENV] = self.fake.address
        self.me = self.fake.world.add_user("Bench", "15550101")
        self.other = self.fake.world.add_user("Other", "15550102")
        self.connector_class = TelegramConnector
        settings = {"api_id": 1, "api_hash": "bench"}
        flow = TelegramConnector.link_flow(settings)
        await flow.start()
        result: Any = await flow.submit({"phone": "+15550101", "code": self.me.login_code})
        self.remote_user_id = result.remote_user_id
        self.settings = {**settings, **result.settings}
        self.secrets = dict(result.secrets)
        self.conversation_id = f"user:{self.other.id}"
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        seen = 0
        while True:
            self.fake.changed.clear()
            posts = list(self.other.posts.values())
            for post in posts[seen:]:
                if post.sender == self.me.id:
                    self.peer_arrivals.arrived(post.text)
            seen = len(posts)
            await self.fake.changed.wait()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.fake.stop()

    async def peer_send(self, text: str) -> None:
        self.fake.world.send(self.other, self.me, text)


class SlackSide(Side):
    """The fake Slack (``msgr_bridge.testing.fakes.slack``, tiers off) with the account under test on Socket
    Mode; the other person posts with his own slack_sdk client, and sees what the workspace stores."""

    async def start(self) -> None:
        from msgr_bridge_slack import SlackConnector
        from slack_sdk.web.async_client import AsyncWebClient

        from msgr_bridge.testing.fakes.slack import FakeSlack

        self.fake = await FakeSlack().start()
        ws = self.fake.workspace
        me, bob = ws.add_user("benchme"), ws.add_user("benchbob")
        self.connector_class = SlackConnector
        self.remote_user_id = me.id
        self.conversation_id = ws.create_channel("bench", [me.id, bob.id]).id
        self.settings = {"api_url": self.fake.base_url, "user_id": me.id, "history_per_minute": 6000}
        self.secrets = {"token": ws.issue_token(me.id).value, "app_token": ws.issue_token(me.id, "app").value}
        self.bob = AsyncWebClient(token=ws.issue_token(bob.id).value, base_url=self.fake.base_url)

        def seen(event: dict[str, Any], audience: frozenset[str]) -> None:
            if event.get("type") == "message" and event.get("user") == me.id and bob.id in audience:
                self.peer_arrivals.arrived(str(event.get("text", "")))

        ws.listeners.append(seen)

    async def stop(self) -> None:
        await self.fake.stop()

    async def peer_send(self, text: str) -> None:
        await self.bob.chat_postMessage(channel=self.conversation_id, text=text)


class DiscordSide(Side):
    """The Discord fake in this process (it shares the CPU with the bridge: the figures include its cost),
    with its generous per-route limits and no global limit: Discord's own (5 messages per 5 s per channel,
    50 requests/s per bot) would measure Discord, not the bridge."""

    async def start(self) -> None:
        from msgr_bridge_discord import DiscordConnector

        from msgr_bridge.testing.fakes.discord import DiscordFake

        self.fake = await DiscordFake().start()
        self.fake.rest.limits.global_per_s = 100_000  # Discord's is 50 requests/s per bot
        bot, token = self.fake.add_bot("bench-bot")
        self.bob = self.fake.add_user("bob")
        guild = self.fake.add_guild("bench", [bot["id"], self.bob["id"]])
        self.conversation_id = self.fake.add_channel(guild["id"], "general")["id"]
        self.connector_class = DiscordConnector
        self.remote_user_id = bot["id"]
        self.settings = {"api_base": self.fake.api_url, "gateway_url": self.fake.gateway_url}
        self.secrets = {"token": token}

        def observe(event: str, data: dict[str, Any]) -> None:
            if event == "MESSAGE_CREATE" and data["author"]["id"] == bot["id"]:
                self.peer_arrivals.arrived(data["content"])

        self.fake.observers.append(observe)

    async def stop(self) -> None:
        await self.fake.stop()

    async def peer_send(self, text: str) -> None:
        self.fake.post(self.conversation_id, self.bob["id"], text)


class SignalSide(Side):
    """The signal-cli-rest-api fake (json-rpc mode): the account is linked on it, Bob is its peer side."""

    def __init__(self) -> None:
        super().__init__()
        from msgr_bridge_signal import SignalConnector

        from msgr_bridge.testing.fakes.signal import SignalFake

        self.fake = SignalFake()
        self.connector_class = SignalConnector
        self.remote_user_id, self.conversation_id = "+15550300001", "+15550300002"
        self.settings, self.secrets = {"number": self.remote_user_id}, {}
        self.fake.on_sent = lambda entry: self.peer_arrivals.arrived(str(entry.get("message", "")))

    async def start(self) -> None:
        await self.fake.start()
        self.settings["base_url"] = self.fake.base_url
        self.fake.link(self.remote_user_id, "Me")
        self.bob = self.fake.person(self.conversation_id, "Bob")

    async def stop(self) -> None:
        await self.fake.stop()

    async def peer_send(self, text: str) -> None:
        self.fake.peer_message(self.bob, self.remote_user_id, text)


class WhatsAppSide(Side):
    """``FakeWhatsmeow`` in place of whatsmeow's Go library (WhatsApp itself cannot be faked: its handshake
    pins WhatsApp's key). What is measured: neonize's own Python (protobuf encoding, the ctypes event
    callback, its dispatcher), the connector and the bridge's pipeline; not whatsmeow, the network or
    WhatsApp. Send pacing is off here (``send_interval_s = 0``, no jitter): with the defaults (one send a
    second plus up to 1.5 s of jitter, against bans) outbound is that pace by design."""

    def __init__(self) -> None:
        super().__init__()
        import itertools

        self.ids = itertools.count(1)
        self.remote_user_id = "447700900001@s.whatsapp.net"
        self.conversation_id = "447700900002@s.whatsapp.net"
        self.settings = {"jid": self.remote_user_id, "send_interval_s": 0, "send_jitter_s": 0,
                         "relogin_base_s": 0}  # fmt: skip

    async def start(self) -> None:
        import sqlite3

        from msgr_bridge_whatsapp import WhatsAppConnector, client
        from msgr_bridge_whatsapp.session import encode
        from msgr_bridge_whatsapp.testing import FakeWhatsmeow

        self.client_module, self.saved = client, client.GO_LIBRARY
        self.fake = fake = FakeWhatsmeow()
        client.GO_LIBRARY = fake
        self.connector_class = WhatsAppConnector
        db = sqlite3.connect(":memory:")  # a session as whatsmeow leaves it after pairing
        db.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY)")
        db.execute("INSERT INTO whatsmeow_device VALUES (?)", (self.remote_user_id,))
        db.commit()
        self.secrets = {"session": encode(db.serialize())}
        db.close()
        send = fake.SendMessage

        async def recorded(uuid: bytes, to: bytes, tl: int, msg: bytes, ml: int) -> bytes:
            answer = await send(uuid, to, tl, msg, ml)
            m = fake.sent[-1].message
            self.peer_arrivals.arrived(m.conversation or m.extendedTextMessage.text)
            return answer

        fake.SendMessage = recorded  # type: ignore[method-assign]

    async def stop(self) -> None:
        self.client_module.GO_LIBRARY = self.saved

    async def peer_send(self, text: str) -> None:
        from msgr_bridge_whatsapp.testing import message_event
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

        bob = self.conversation_id
        event = message_event(bob, bob, WAMessage(conversation=text), id=f"BENCH-{next(self.ids)}")
        self.fake.emit(event)


class TeamsSide(Side):
    """The Teams fake in process (identity platform and Graph over TLS); the connector polls it every
    0.5 s while busy (``poll_min_s``), so inbound latency is mostly that interval."""

    extra_settings: dict[str, Any] = {}

    async def start(self) -> None:
        from msgr_bridge_teams import TeamsConnector
        from msgr_bridge_teams.link import TeamsLinkFlow

        from msgr_bridge.testing.fakes.teams import FakeTeams

        self.fake = await FakeTeams().start()
        self.me, self.bob = self.fake.add_user("me", "Me"), self.fake.add_user("bob", "Bob")
        self.conversation_id = self.fake.add_chat([self.me, self.bob])
        self.connector_class = TeamsConnector
        fake = self.fake
        flow = TeamsLinkFlow({"client_id": fake.client_id, "tenant": fake.tenant_id, "poll_min_s": 0.5,
                              "authority_host": fake.base_url, "graph_url": fake.graph_url,
                              "ca_file": str(fake.ca_file), "poll_max_s": 2,
                              **self.extra_settings})  # fmt: skip
        await flow.start()
        fake.identity.approve_pending(self.me)
        result = await flow.submit({})
        self.remote_user_id = result.remote_user_id  # type: ignore[union-attr]
        self.settings, self.secrets = dict(result.settings), dict(result.secrets)  # type: ignore[union-attr]
        fake.watchers.append(self._watch)

    def _watch(self, chat: str, msg: dict[str, Any]) -> None:
        if msg["from"]["user"]["id"] == self.me:
            content = msg["body"]["content"]
            self.peer_arrivals.arrived(content.removeprefix("<p>").removesuffix("</p>"))

    async def stop(self) -> None:
        await self.fake.stop()

    async def peer_send(self, text: str) -> None:
        self.fake.post_as(self.bob, self.conversation_id, f"<p>{text}</p>")


class TeamsWebhookSide(TeamsSide):
    """Teams receiving by change notifications: the fake posts to the hook route (served by
    ``msgr_bridge.testing.hooks``), and the connector fetches the chat it names; polling only every 60 s."""

    extra_settings = {"receive": "webhook", "webhook_poll_s": 60, "poll_max_s": 60}

    async def start(self) -> None:
        from contextlib import AsyncExitStack

        from msgr_bridge.sdk.hooks import HookRegistry
        from msgr_bridge.testing.hooks import serve_hooks

        registry = HookRegistry(None)
        self._stack = AsyncExitStack()
        await self._stack.enter_async_context(serve_hooks(registry))
        self.hooks = registry.for_account("teams", "bench-teams")
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self._stack.aclose()


PEERS: dict[str, type[Side]] = {
    "loopback": LoopbackSide,
    "xmpp": XmppSide,
    "irc": IrcSide,
    "matrix": MatrixSide,
    "slack": SlackSide,
    "discord": DiscordSide,
    "telegram": TelegramSide,
    "signal": SignalSide,
    "teams": TeamsSide,
    "whatsapp": WhatsAppSide,
    "teams-webhook": TeamsWebhookSide,
}
