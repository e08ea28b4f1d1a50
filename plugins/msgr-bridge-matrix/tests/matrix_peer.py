"""Test helpers: "the other person" as an independent mautrix client, and a running connector."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore
from mautrix.types import RoomCreatePreset, RoomID, UserID
from msgr_bridge_matrix import MatrixConnector

from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.synapse import SynapseServer

_names = itertools.count()


def fresh_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


@dataclass
class Peer:
    """A real Matrix user with its own mautrix client and its own /sync position."""

    server: SynapseServer
    user_id: str
    password: str
    client: Client
    since: str | None = None
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    async def create(cls, server: SynapseServer, prefix: str, display_name: str | None = None) -> Peer:
        password = "pw-" + prefix
        answer = server.register_user(fresh_name(prefix), password)
        client = Client(
            base_url=server.base_url, token=answer["access_token"], state_store=MemoryStateStore()
        )
        client.mxid = UserID(answer["user_id"])
        peer = cls(server, answer["user_id"], password, client)
        if display_name:
            await client.set_displayname(display_name)
        peer.since = (await client.sync(timeout=0))["next_batch"]
        return peer

    async def close(self) -> None:
        await self.client.api.session.close()

    async def wait_for(
        self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first (room_id, event) seen by this client's /sync that matches; waits for more if needed."""
        async with asyncio.timeout(timeout):
            while True:
                for room_id, event in self.seen:
                    if predicate(room_id, event):
                        return event
                resp = await self.client.sync(since=self.since, timeout=2000)
                self.since = resp["next_batch"]
                for room_id, room in (resp.get("rooms", {}).get("join") or {}).items():
                    for section in ("timeline", "ephemeral"):
                        for event in (room.get(section) or {}).get("events") or []:
                            self.seen.append((room_id, event))

    async def room_with(self, me: Peer, *, direct: bool, name: str | None = None) -> str:
        """Create a room, invite ``me`` and let ``me`` join (and mark it direct on both sides)."""
        room = await self.client.create_room(
            name=name,
            preset=RoomCreatePreset.TRUSTED_PRIVATE if direct else RoomCreatePreset.PRIVATE,
            invitees=[UserID(me.user_id)],
            is_direct=direct,
        )
        await me.client.join_room_by_id(room)
        if direct:
            await me.client.set_account_data("m.direct", {self.user_id: [room]})
            await self.client.set_account_data("m.direct", {me.user_id: [room]})
        return str(room)

    async def send_html(self, room_id: str, text: str, html: str) -> str:
        content = {
            "msgtype": "m.text",
            "body": text,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
        }
        return str(await self.client.send_message_event(RoomID(room_id), "m.room.message", content))


@dataclass
class Running:
    """A connected, subscribed connector with its sink and task."""

    connector: MatrixConnector
    sink: CollectingSink
    task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        await self.connector.disconnect()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


def make_connector(
    server: SynapseServer,
    me: Peer,
    *,
    state: Any = None,
    secrets: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[MatrixConnector, CollectingSink]:
    sink = CollectingSink()
    ctx = make_context(
        "matrix",
        remote_user_id=me.user_id,
        sink=sink,
        state=state,
        settings={"homeserver": server.base_url, "user_id": me.user_id, **(settings or {})},
        secrets=secrets if secrets is not None else {"password": me.password},
    )
    return MatrixConnector(ctx), sink


async def start(connector: MatrixConnector, sink: CollectingSink) -> Running:
    """connect -> sync_state -> (history into the sink) -> subscribe in a task, like the supervisor."""
    await connector.connect()
    snapshot = await connector.sync_state(None)
    for payload in snapshot.history:
        await sink.push(payload)
    running = Running(connector, sink)
    running.task = asyncio.create_task(connector.subscribe())
    return running


def converted(connector: MatrixConnector, sink: CollectingSink) -> list[Any]:
    return [e for p in sink.payloads for e in connector.convert(p, connector.ctx.account)]


async def wait_event(running: Running, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """The first canonical event (converted from the sink's payloads) matching ``predicate``."""
    acct = running.connector.ctx.account

    def matches(payload: Any) -> bool:
        return any(predicate(e) for e in running.connector.convert(payload, acct))

    payload = await running.sink.wait_for(matches, timeout)
    return next(e for e in running.connector.convert(payload, acct) if predicate(e))
