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


class TeamsSide(Side):
    """The Teams fake in process (identity platform and Graph over TLS); the connector polls it every
    0.5 s while busy (``poll_min_s``), so inbound latency is mostly that interval."""

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
                              "ca_file": str(fake.ca_file), "poll_max_s": 2})  # fmt: skip
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


PEERS: dict[str, type[Side]] = {
    "loopback": LoopbackSide,
    "xmpp": XmppSide,
    "irc": IrcSide,
    "matrix": MatrixSide,
    "teams": TeamsSide,
}
