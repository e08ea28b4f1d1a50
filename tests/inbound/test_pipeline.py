"""The inbound pipeline end to end: the real loopback connector -> AccountSink -> MemoryBus -> InboundPipeline
-> DatabaseInboundStore -> BusNotifier, on SQLite and real PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import structlog
from anyio.abc import TaskGroup
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork
from sqlalchemy import func, select

from msgr_bridge.bus import MemoryBus
from msgr_bridge.connectors.clock import SystemClock
from msgr_bridge.connectors.protocol import ConnectorContext
from msgr_bridge.connectors.supervisor import AccountRuntime, Supervisor
from msgr_bridge.errors import TransientError
from msgr_bridge.inbound.notify import BusNotifier, StoredEvent
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.inbound.pipeline import InboundPipeline
from msgr_bridge.inbound.sink import AccountSink, RawInbound
from msgr_bridge.schema import Account, ConnectionState, Message, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import MessageRow
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.entities import ReactionRepo
from msgr_bridge.store.repos.messages import MessageRepo
from msgr_bridge.store.repos.quarantine import QuarantineRepo
from msgr_bridge.sync.jobs import SyncJob
from msgr_bridge.testing.fakes import MemorySecrets, MemoryStateStore

NET = "inbound-t"
PASSWORDS = {"alice": "pw-a", "carol": "pw-c", "bob": "pw-b"}


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        for _ in range(1_000_000):
            if predicate():
                return
            await anyio.sleep(0.02)


@dataclass
class Harness:
    db: Database
    bus: MemoryBus
    pipeline: InboundPipeline
    net: LoopbackNetwork
    tg: TaskGroup
    notified: list[StoredEvent] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    ended: list[TransientError] = field(default_factory=list)

    def connector(self, user: str) -> LoopbackConnector:
        account = self.accounts[user]
        ctx = ConnectorContext(
            account=account,
            sink=AccountSink(self.bus, account),
            secrets=MemorySecrets({"password": PASSWORDS[user]}),
            state=MemoryStateStore(),
            clock=SystemClock(),
            settings={"network": NET},
            log=structlog.get_logger("test"),
        )
        return LoopbackConnector(ctx)

    async def run(self, connector: LoopbackConnector) -> None:
        """Connect and subscribe in the background."""
        await connector.connect()

        async def subscribe() -> None:
            try:
                await connector.subscribe()
            except TransientError as exc:  # a dropped session ends here, as the supervisor would see it
                self.ended.append(exc)

        self.tg.start_soon(subscribe)

    async def count_messages(self, remote_id: str | None = None) -> int:
        stmt = select(func.count()).select_from(MessageRow)
        if remote_id is not None:
            stmt = stmt.where(MessageRow.remote_id == remote_id)
        async with self.db.session() as s:
            return int(await s.scalar(stmt) or 0)


@asynccontextmanager
async def harness(db: Database) -> AsyncIterator[Harness]:
    """The pipeline running in a task group (opened by each test: a fixture's teardown runs in another
    task, which a task group does not allow)."""
    LoopbackNetwork.reset(NET)
    net = LoopbackNetwork.get(NET)
    for user, pw in PASSWORDS.items():
        net.add_user(user, user.title(), password=pw)
    net.create_group("g1", "Group", ["alice", "carol", "bob"])
    repo = AccountRepo(db)
    bus = MemoryBus()
    pipeline = InboundPipeline(
        bus=bus,
        tenant="default",
        converters={"loopback": LoopbackConnector.convert},
        store=DatabaseInboundStore(db),
        notifier=BusNotifier(bus),
        max_batch=64,
    )
    async with anyio.create_task_group() as tg:
        harness = Harness(db, bus, pipeline, net, tg)
        for user in ("alice", "carol"):
            account = Account(id=f"acc-{user}", network="loopback", remote_user_id=user)
            await repo.create(account)
            harness.accounts[user] = account
        await tg.start(pipeline.run)

        async def collect(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            async with bus.subscribe("default.*.stored", name="test-notified") as sub:
                task_status.started()
                async for env in sub:
                    harness.notified.append(env.message)

        await tg.start(collect)
        yield harness
        tg.cancel_scope.cancel()
    LoopbackNetwork.reset(NET)


async def test_two_linked_accounts_store_once_and_link_both(db: Database) -> None:
    async with harness(db) as h:
        alice, carol = h.connector("alice"), h.connector("carol")
        await h.run(alice)
        await h.run(carol)
        posted = [h.net.post("g1", "bob", f"hello {i}") for i in range(20)]
        await eventually(lambda: h.pipeline.stats.created + h.pipeline.stats.linked == 40)
        repo = MessageRepo(h.db)
        for p in posted:
            assert await h.count_messages(p["id"]) == 1
            stored = await repo.get_by_remote("loopback", "g1", p["id"])
            assert stored is not None
            assert await repo.accounts_for(stored.id) == ["acc-alice", "acc-carol"]
        assert h.pipeline.stats.created == 20 and h.pipeline.stats.linked == 20
        await eventually(lambda: len(h.notified) == 20)
        assert sorted(e.event.remote_id for e in h.notified if isinstance(e.event, Message)) == sorted(
            p["id"] for p in posted
        )


def recorded_send(echo: dict[str, Any], txn_id: str) -> Message:
    """What the delivery recorder stores for alice's successful send: the message with our transaction id."""
    return Message(
        network="loopback",
        account_id="acc-alice",
        conversation_id="g1",
        remote_id=echo["id"],
        sender=Sender(user_id="alice", is_self=True),
        text=echo["text"],
        txn_id=txn_id,
    )


async def test_echo_of_our_own_send_is_not_stored_twice(db: Database) -> None:
    async with harness(db) as h:
        # The network takes our send; its echo is held back until the delivery recorder has stored the
        # send, so the echo is the second arrival whatever the scheduling (the order this test is about).
        echo = h.net.post("g1", "alice", "from the bridge", txn_id="txn-1")
        ours = recorded_send(echo, "txn-1")
        async with h.db.session() as s:
            await MessageRepo(h.db).insert_batch(s, [ours])
        await AccountSink(h.bus, h.accounts["alice"]).push(echo)
        await eventually(lambda: h.pipeline.stats.received >= 1)
        await eventually(lambda: h.pipeline.stats.duplicates >= 1)
        assert await h.count_messages() == 1
        stored = await MessageRepo(h.db).get_by_remote("loopback", "g1", echo["id"])
        assert stored is not None and stored.txn_id == "txn-1"
        assert h.pipeline.stats.created == 0


async def test_echo_that_beats_the_delivery_record_is_still_stored_once(db: Database) -> None:
    async with harness(db) as h:
        echo = h.net.post("g1", "alice", "from the bridge", txn_id="txn-2")
        await AccountSink(h.bus, h.accounts["alice"]).push(echo)
        await eventually(lambda: h.pipeline.stats.created == 1)
        ours = recorded_send(echo, "txn-2")
        async with h.db.session() as s:
            outcomes = await MessageRepo(h.db).insert_batch(s, [ours])
        assert [o.created for o in outcomes] == [False]
        assert await h.count_messages() == 1
        stored = await MessageRepo(h.db).get_by_remote("loopback", "g1", echo["id"])
        assert stored is not None and stored.txn_id == "txn-2"


async def test_edit_and_reaction_before_their_message_are_held(db: Database) -> None:
    async with harness(db) as h:
        message = h.net.post("g1", "bob", "first draft")
        edit = h.net.edit("g1", "bob", message["id"], "final text")
        reaction = h.net.react("g1", "carol", message["id"], "🎉")
        sink = AccountSink(h.bus, h.accounts["alice"])
        await sink.push(edit)
        await sink.push(reaction)
        await eventually(lambda: h.pipeline.stats.held == 2)
        assert await h.count_messages() == 0
        await sink.push(message)
        await eventually(lambda: h.pipeline.stats.held == 0 and h.pipeline.stats.applied == 2)
        stored = await MessageRepo(h.db).get_by_remote("loopback", "g1", message["id"])
        assert stored is not None and stored.text == "final text" and stored.edit_version == 1
        reactions = await ReactionRepo(h.db).list_for(stored.id)
        assert [(r.sender_id, r.emoji) for r in reactions] == [("carol", "🎉")]


async def test_malformed_payloads_are_quarantined_while_good_ones_flow(db: Database) -> None:
    async with harness(db) as h:
        sink = AccountSink(h.bus, h.accounts["alice"])
        good = [h.net.post("g1", "bob", f"ok {i}") for i in range(5)]
        bad: list[dict[str, Any]] = [
            {"type": "message", "ts": 1.0, "sender": "bob"},  # no conversation, no id
            {"type": "nonsense", "ts": 1.0, "sender": "bob", "conversation": "g1"},
            {"type": "message", "ts": "yesterday", "password": "hunter2"},
        ]
        for i, payload in enumerate(good):
            await sink.push(payload)
            if i < len(bad):
                await sink.push(bad[i])
        await eventually(lambda: h.pipeline.stats.created == 5 and h.pipeline.stats.quarantined == 3)
        quarantined = await QuarantineRepo(h.db).list(network="loopback")
        assert len(quarantined) == 3
        assert all(q.account_id == "acc-alice" and q.error for q in quarantined)
        assert all("hunter2" not in repr(q.payload) for q in quarantined)
        assert await h.count_messages() == 5


@pytest.mark.parametrize("bad", ["nul-in-text", "surrogate-in-id"])
async def test_a_payload_the_database_refuses_is_quarantined_alone(db: Database, bad: str) -> None:
    """Issue #10 item 4: one refused row made the pipeline retry its whole batch forever while every
    connector waited on ``sink.push``. PostgreSQL refuses a NUL; both refuse a lone surrogate (in an id,
    where it cannot be replaced up front as it is in text)."""
    refused = bad == "surrogate-in-id" or not db.is_sqlite
    async with harness(db) as h:
        sink = AccountSink(h.bus, h.accounts["alice"])
        acked: list[str] = []

        def acker(remote_id: str) -> Callable[[], Any]:
            async def ack() -> None:
                acked.append(remote_id)

            return ack

        def post(i: int) -> dict[str, Any]:
            if i != 50:
                return h.net.post("g1", "bob", f"fine {i}")
            if bad == "nul-in-text":
                return h.net.post("g1", "bob", "NUL \x00 inside")
            return h.net.post("g1", "bob", "odd id", message_id="m\udcff")

        posted = [post(i) for i in range(100)]
        for p in posted:
            await sink.push(p, ack=acker(p["id"]))
        after = h.net.post("g1", "bob", "the pipeline keeps going")
        await sink.push(after)
        await eventually(lambda: h.pipeline.stats.created == (100 if refused else 101), timeout=30)
        assert await h.count_messages(after["id"]) == 1
        assert sorted(acked) == sorted(p["id"] for p in posted)
        quarantined = await QuarantineRepo(h.db).list(network="loopback")
        if not refused:  # SQLite stores a NUL as it is
            assert quarantined == [] and await h.count_messages() == 101
            return
        assert await h.count_messages() == 100  # 99 of the batch and the one after
        assert h.pipeline.stats.refused == 1 and len(quarantined) == 1
        (q,) = quarantined
        assert q.error.startswith("the database refused it: ") and q.account_id == "acc-alice"
        assert q.payload["id"] in (posted[50]["id"], "m\\udcff")  # the raw payload, storable (escaped)
        assert q.payload["text"] in ("NUL \\u0000 inside", "odd id")


async def test_lone_surrogates_in_text_are_replaced_not_refused(db: Database) -> None:
    async with harness(db) as h:
        posted = h.net.post("g1", "bob", "half \udcff a pair")
        await AccountSink(h.bus, h.accounts["alice"]).push(posted)
        await eventually(lambda: h.pipeline.stats.created == 1)
        stored = await MessageRepo(h.db).get_by_remote("loopback", "g1", posted["id"])
        assert stored is not None and stored.text == "half \ufffd a pair"


async def test_a_processed_batch_is_not_held_while_the_pipeline_waits_for_the_next(db: Database) -> None:
    """Issue 19: the pipeline's loop kept its last batch (payloads, events, rows) referenced until another
    came, so a burst's last batch stayed in memory and kept the allocator's arenas from being given back."""
    async with harness(db) as h:
        sink = AccountSink(h.bus, h.accounts["alice"])
        for i in range(3):
            await sink.push(h.net.post("g1", "bob", f"m{i}"))
        await eventually(lambda: h.pipeline.stats.created == 3)

        def nothing_held() -> bool:
            gc.collect()
            return not any(isinstance(o, RawInbound) for o in gc.get_objects())

        await eventually(nothing_held, timeout=5)


async def test_ack_is_called_only_after_commit(db: Database) -> None:
    async with harness(db) as h:
        sink = AccountSink(h.bus, h.accounts["alice"])
        repo = MessageRepo(h.db)
        seen_at_ack: dict[str, bool] = {}

        def acker(remote_id: str) -> Callable[[], Any]:
            async def ack() -> None:
                seen_at_ack[remote_id] = await repo.get_by_remote("loopback", "g1", remote_id) is not None

            return ack

        posted = [h.net.post("g1", "bob", f"m{i}") for i in range(30)]
        for p in posted:
            await sink.push(p, ack=acker(p["id"]))
        await eventually(lambda: len(seen_at_ack) == 30)
        assert all(seen_at_ack.values())


async def test_database_outage_delays_but_loses_nothing(db: Database) -> None:
    async with harness(db) as h:
        sink = AccountSink(h.bus, h.accounts["alice"])
        acked: list[str] = []

        def acker(remote_id: str) -> Callable[[], Any]:
            async def ack() -> None:
                acked.append(remote_id)

            return ack

        await h.db.close()  # the database goes away
        posted = [h.net.post("g1", "bob", f"during outage {i}") for i in range(50)]
        for p in posted:
            await sink.push(p, ack=acker(p["id"]))
        await eventually(lambda: h.pipeline.stats.persist_retries >= 2)
        assert acked == []  # nothing acknowledged while nothing is committed
        await h.db.connect()  # and comes back
        await eventually(lambda: h.pipeline.stats.created == 50, timeout=30)
        assert sorted(acked) == sorted(p["id"] for p in posted)
        assert await h.count_messages() == 50


async def test_sync_catch_up_after_a_drop_is_idempotent(db: Database) -> None:
    async with harness(db) as h:
        alice = h.connector("alice")
        await h.run(alice)
        live = h.net.post("g1", "bob", "live")
        await eventually(lambda: h.pipeline.stats.created == 1)
        h.net.drop("alice")  # the session ends; what follows is missed live
        missed = [h.net.post("g1", "bob", f"missed {i}") for i in range(25)]
        job = SyncJob(h.db, h.pipeline)
        first = await job.run_once(h.accounts["alice"], alice)
        assert first.stored == 25
        second = await job.run_once(h.accounts["alice"], alice)
        assert second.stored == 0 and second.history == 0
        job2 = SyncJob(h.db, h.pipeline)  # a fresh cursor store would replay everything: still nothing new
        await job2.cursors.set_cursor("acc-alice", None)
        third = await job2.run_once(h.accounts["alice"], alice)
        assert third.history == 26 and third.stored == 0
        assert await h.count_messages() == 26
        for p in [live, *missed]:
            assert await h.count_messages(p["id"]) == 1


async def test_connected_but_deaf_is_detected_and_reconnected(db: Database) -> None:
    async with harness(db) as h:
        alice = h.connector("alice")
        account = h.accounts["alice"]
        supervisor = Supervisor()
        job = SyncJob(h.db, h.pipeline, reconnect=supervisor.reconnect, deaf_grace_s=0)

        async def on_connected(rt: AccountRuntime) -> None:
            await job.run_once(account, rt.connector)

        supervisor._on_connected = on_connected
        async with supervisor:
            rt = supervisor.start(account.id, alice)
            await eventually(lambda: rt.state == ConnectionState.CONNECTED)
            first_session = alice.session
            assert first_session is not None
            h.net.deafen("alice")
            deaf_msgs = [h.net.post("g1", "bob", f"unheard {i}") for i in range(3)]
            await anyio.sleep(0.1)
            assert h.pipeline.stats.created == 0  # the connection looks healthy but heard nothing
            report = await job.run_once(account, alice, periodic=True)
            assert report.deaf and report.late == 3
            assert account.id in job.last_deaf and account.id in job.last_ok  # what the deaf alert reads
            await eventually(lambda: rt.restarts >= 1 and rt.state == ConnectionState.CONNECTED)
            assert alice.session is not None and alice.session is not first_session
            assert not alice.session.deaf
            heard = h.net.post("g1", "bob", "heard again")
            await eventually(lambda: h.pipeline.stats.created == 4)
            for p in [*deaf_msgs, heard]:
                assert await h.count_messages(p["id"]) == 1
            await supervisor.stop_all(timeout=5)
