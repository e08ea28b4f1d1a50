"""The outbound harness: a real loopback network and connector under the real Supervisor, the real store
(SQLite and PostgreSQL through ``db``), the real bus, service and delivery worker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

from msgr_bridge.bus import MemoryBus
from msgr_bridge.connectors.supervisor import Supervisor
from msgr_bridge.inbound.dedupe import DedupeCache
from msgr_bridge.inbound.sink import AccountSink
from msgr_bridge.outbound.delivery import DeliverySettings, DeliveryWorker
from msgr_bridge.outbound.impersonation import Impersonation
from msgr_bridge.outbound.policy import PolicyEngine
from msgr_bridge.outbound.requests import OutboundRequest
from msgr_bridge.outbound.service import OutboundService
from msgr_bridge.schema import Account, Capabilities, ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import AccountRepo, OutboxEntry, OutboxRepo, OutboxState
from msgr_bridge.testing.fakes import make_context

TENANT = "default"
ACCOUNT = "acct-1"
ROOM = "room-1"
FAST = DeliverySettings(
    max_attempts=3, base_backoff_s=0.02, max_backoff_s=0.1, idle_poll_s=0.5, echo_grace_s=0.05
)


@dataclass
class Harness:
    db: Database
    bus: MemoryBus
    net: LoopbackNetwork
    connector: LoopbackConnector | None = None

    def __post_init__(self) -> None:
        self.outbox = OutboxRepo(self.db)

    @asynccontextmanager
    async def live(
        self,
        *,
        settings: DeliverySettings = FAST,
        policy: PolicyEngine | None = None,
        dedupe: DedupeCache | None = None,
    ) -> AsyncIterator[Harness]:
        """The supervisor, service and worker (not started: ``start_worker``) for the test's body."""
        async with Supervisor() as supervisor:
            self.supervisor = supervisor
            self.impersonation = Impersonation(self.db, supervisor)
            self.worker = DeliveryWorker(
                self.db, self.bus, self.impersonation, settings=settings, dedupe=dedupe
            )
            self.service = OutboundService(
                self.db, self.bus, self.impersonation, policy, wake=self.worker.wake, holds=self.worker.holds
            )
            async with anyio.create_task_group() as tg:
                self.tg = tg
                yield self
                tg.cancel_scope.cancel()

    def request(self, text: str = "hello", **kw: Any) -> OutboundRequest:
        fields: dict[str, Any] = {
            "tenant": TENANT,
            "user": "alice",
            "account_id": ACCOUNT,
            "conversation_id": ROOM,
            "text": text,
        }
        fields.update(kw)
        return OutboundRequest.model_validate(fields)

    async def connect(self, sink: Any = None) -> LoopbackConnector:
        """Start the account's connector under the supervisor and wait until it is connected."""
        ctx = make_context(
            "loopback",
            account_id=ACCOUNT,
            remote_user_id="me",
            settings={"network": self.net.name},
            secrets={"password": "pw"},
            sink=sink,
        )
        self.connector = LoopbackConnector(ctx)
        self.supervisor.start(ACCOUNT, self.connector)
        await until(lambda: self.supervisor.state(ACCOUNT) is ConnectionState.CONNECTED)
        return self.connector

    def account_sink(self) -> AccountSink:
        return AccountSink(self.bus, Account(id=ACCOUNT, network="loopback", remote_user_id="me"))

    async def start_worker(self, worker: DeliveryWorker | None = None) -> None:
        await self.tg.start((worker or self.worker).run)

    async def wait_for(self, outbox_id: str, *states: OutboxState, timeout: float = 20) -> OutboxEntry:
        with anyio.fail_after(timeout):
            while True:
                entry = await self.outbox.get(outbox_id)
                assert entry is not None
                if entry.state in states:
                    return entry
                await anyio.sleep(0.02)

    def sent_texts(self, conversation: str = ROOM) -> list[str]:
        return [
            p["text"]
            for p in self.net.log
            if p["type"] == "message" and p["conversation"] == conversation and p["sender"] == "me"
        ]

    def sends_with_txn(self, txn_id: str) -> int:
        return sum(1 for p in self.net.log if p.get("txn_id") == txn_id)


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``predicate`` until it holds (fails the test after ``timeout`` seconds)."""
    with anyio.fail_after(timeout):
        while True:
            if predicate():
                return
            await anyio.sleep(0.01)


def make_network() -> LoopbackNetwork:
    net = LoopbackNetwork.get(f"outbound-{uuid.uuid4().hex[:8]}")
    net.add_user("me", "Me", password="pw")
    net.add_user("bob", "Bob", password="pw2")
    net.create_group(ROOM, "Room one", ["me", "bob"])
    net.create_group("room-2", "Room two", ["me", "bob"])
    return net


@pytest.fixture
async def harness(db: Database) -> Harness:
    repo = AccountRepo(db)
    await repo.ensure_user(TENANT, "alice")
    await repo.create(
        Account(id=ACCOUNT, tenant=TENANT, network="loopback", remote_user_id="me"),
        user_id="alice",
        capabilities=LoopbackConnector.capabilities,
    )
    return Harness(db, MemoryBus(), make_network())


def caps(**kw: Any) -> Capabilities:
    return LoopbackConnector.capabilities.model_copy(update=kw)
