"""The loopback connector against a network hosted behind ``RemoteNetworkServer`` (a real WebSocket)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork
from msgr_bridge_loopback.remote import RemoteNetworkServer

from msgr_bridge import AuthenticationFailed, OutboundMessage, PermanentError, RateLimited, TransientError
from msgr_bridge.connectors.protocol import Ack, RawPayload
from msgr_bridge.testing.fakes import make_context


class AckingSink:
    """Collects payloads with their acks; acks only what the test says."""

    def __init__(self) -> None:
        self.items: list[tuple[RawPayload, Ack | None]] = []
        self._changed = anyio.Event()

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        self.items.append((payload, ack))
        self._changed.set()

    async def wait_count(self, n: int) -> None:
        with anyio.fail_after(10):
            while len(self.items) < n:
                self._changed = anyio.Event()
                await self._changed.wait()


@pytest.fixture
async def server() -> AsyncIterator[RemoteNetworkServer]:
    LoopbackNetwork.reset("remote-t")
    net = LoopbackNetwork.get("remote-t")
    net.add_user("alice", "Alice", password="pw-a")
    net.add_user("bob", "Bob", password="pw-b")
    net.create_group("g1", "Group", ["alice", "bob"])
    async with RemoteNetworkServer(net) as srv:
        yield srv


def connector(server: RemoteNetworkServer, sink: AckingSink, password: str = "pw-a") -> LoopbackConnector:
    ctx = make_context(
        "loopback",
        remote_user_id="alice",
        settings={"url": server.url},
        secrets={"password": password},
        sink=sink,
    )
    return LoopbackConnector(ctx)


async def test_login_is_checked(server: RemoteNetworkServer) -> None:
    c = connector(server, AckingSink(), password="wrong")
    with pytest.raises(AuthenticationFailed):
        await c.connect()


async def test_unacked_deliveries_come_back_after_reconnect(server: RemoteNetworkServer) -> None:
    net = server.network
    sink = AckingSink()
    c = connector(server, sink)
    await c.connect()
    async with anyio.create_task_group() as tg:
        tg.start_soon(c.subscribe)
        first = net.post("g1", "bob", "one")
        second = net.post("g1", "bob", "two")
        await sink.wait_count(2)
        ack = sink.items[0][1]
        assert ack is not None
        await ack()  # only the first is committed
        await anyio.sleep(0.1)
        await c.disconnect()
    assert server.acked == 1
    sink2 = AckingSink()
    c2 = connector(server, sink2)
    await c2.connect()
    async with anyio.create_task_group() as tg:
        tg.start_soon(c2.subscribe)
        third = net.post("g1", "bob", "three")
        await sink2.wait_count(2)
        await c2.disconnect()
    ids = [p["id"] for p, _ in sink2.items]
    assert ids == [second["id"], third["id"]]
    assert first["id"] not in ids


async def test_send_is_idempotent_by_txn_id(server: RemoteNetworkServer) -> None:
    c = connector(server, AckingSink())
    await c.connect()
    try:
        a = await c.send_message("g1", OutboundMessage(text="hi", txn_id="t-1"))
        b = await c.send_message("g1", OutboundMessage(text="hi", txn_id="t-1"))
        other = await c.send_message("g1", OutboundMessage(text="hi", txn_id="t-2"))
    finally:
        await c.disconnect()
    assert a.remote_id == b.remote_id != other.remote_id
    posted = [p for p in server.network.log if p.get("txn_id") == "t-1"]
    assert len(posted) == 1 and server.send_attempts["t-1"] == 2


async def test_faults_travel_as_connector_errors(server: RemoteNetworkServer) -> None:
    c = connector(server, AckingSink())
    await c.connect()
    try:
        server.network.inject_fault("send", RateLimited(3.0))
        with pytest.raises(RateLimited) as info:
            await c.send_message("g1", OutboundMessage(text="x", txn_id="t"))
        assert info.value.retry_after == 3.0
        with pytest.raises(PermanentError):
            await c.send_message("nope", OutboundMessage(text="x", txn_id="t3"))
    finally:
        await c.disconnect()


async def test_sync_state_and_drop(server: RemoteNetworkServer) -> None:
    net = server.network
    for i in range(5):
        net.post("g1", "bob", f"m{i}")
    sink = AckingSink()
    c = connector(server, sink)
    await c.connect()
    snap = await c.sync_state("2")
    assert [p["seq"] for p in snap.history] == [3, 4, 5] and snap.cursor == "5"
    assert {x.remote_id for x in snap.conversations} == {"g1"}
    assert {x.remote_id for x in snap.contacts} == {"alice", "bob"}

    async def drop_soon() -> None:
        await anyio.sleep(0.05)
        net.drop("alice")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drop_soon)
            with pytest.raises(TransientError):
                await c.subscribe()
    finally:
        await c.disconnect()
