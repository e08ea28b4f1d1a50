"""The loopback connector passes the connector contract suite (the reference harness for plugin authors)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork
from msgr_bridge_loopback.network import Payload, Session

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness


class LoopbackHarness(ConnectorHarness):
    """The account under test is ``alice``; the other person is ``bob`` with his own network session."""

    connector_class = LoopbackConnector
    can_restart = True  # "restart" drops alice's connections, as a server restart would

    def __init__(self) -> None:
        super().__init__()
        self.name = f"contract-{uuid.uuid4().hex[:8]}"
        self.net = LoopbackNetwork.get(self.name)
        self.net.add_user("alice", "Alice", password="pw-a")
        self.net.add_user("bob", "Bob", password="pw-b")
        self.conversation_id = "g1"
        self.net.create_group("g1", "Group", ["alice", "bob"])
        self.seen: list[Payload] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._bob: Session | None = None

    async def start(self) -> None:
        self._bob = self.net.open_session("bob")
        self._reader = asyncio.create_task(self._read(self._bob))

    async def _read(self, session: Session) -> None:
        while True:
            self.seen.append(await session.receive())
            self._changed.set()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        LoopbackNetwork.reset(self.name)

    async def _wait(self, predicate: Callable[[Payload], bool]) -> Payload:
        async with asyncio.timeout(WAIT_S):
            while True:
                for payload in self.seen:
                    if payload["sender"] == "alice" and predicate(payload):
                        return payload
                self._changed.clear()
                await self._changed.wait()

    def link_settings(self) -> Mapping[str, Any]:
        return {"network": self.name}

    def link_answers(self) -> Mapping[str, str]:
        return {"user_id": "alice", "password": "pw-a"}

    def bad_link_answers(self) -> Mapping[str, str]:
        return {"user_id": "alice", "password": "wrong"}

    async def peer_send(self, text: str) -> str | None:
        return str(self.net.post(self.conversation_id, "bob", text)["id"])

    async def peer_wait_message(self, text: str) -> str:
        found = await self._wait(lambda p: p["type"] == "message" and text in p["text"])
        return str(found["text"])

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        await self._wait(lambda p: p["type"] == "edit" and p["target"] == target_id and p["text"] == text)

    async def peer_sees_delete(self, target_id: str) -> None:
        await self._wait(lambda p: p["type"] == "delete" and p["target"] == target_id)

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        await self._wait(
            lambda p: (
                p["type"] == "reaction"
                and (p["target"], p["emoji"], p["action"]) == (target_id, emoji, action.value)
            )
        )

    async def peer_sees_read(self, up_to_id: str) -> None:
        await self._wait(lambda p: p["type"] == "read" and p["target"] == up_to_id)

    async def peer_sees_typing(self, active: bool) -> None:
        await self._wait(lambda p: p["type"] == "typing" and p["active"] is active)

    async def stop_server(self) -> None:
        self.net.drop("alice")

    async def start_server(self) -> None:
        return None

    def sample_payloads(self) -> Sequence[RawPayload]:
        base = {"conversation": "g1", "ts": 1_700_000_000.5, "sender": "bob", "sender_name": "Bob", "seq": 1}
        return [
            {**base, "type": "message", "id": "m1", "text": "hello", "reply_to": "m0"},
            {**base, "type": "edit", "id": "e1", "target": "m1", "text": "hello!", "version": 1},
            {**base, "type": "reaction", "target": "m1", "emoji": "👍", "action": "add"},
            {**base, "type": "read", "target": "m1"},
            {**base, "type": "typing", "active": True},
            {**base, "type": "delete", "target": "m1"},
            {**base, "type": "membership", "action": "join"},
            {**base, "type": "message", "id": "m2", "sender": "alice", "text": "mine", "txn_id": "t-1"},
        ]


@pytest.fixture
async def connector_harness() -> AsyncIterator[LoopbackHarness]:
    harness = LoopbackHarness()
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass
