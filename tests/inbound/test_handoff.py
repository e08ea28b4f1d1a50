"""The inbound pipeline prepares the next batch while the current one commits (``inbound.handoff``), and
keeps every guarantee of a loop that did one batch at a time: commits, acks and notifications in batch
order, each batch's acks and notifications after its own commit, no message stored twice, outages waited
out and refused events quarantined, a bug raised as it is, and shutdown waiting for both batches. On SQLite
and PostgreSQL, through the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork
from sqlalchemy import func, select

from msgr_bridge.bus import MemoryBus
from msgr_bridge.errors import DatabaseError
from msgr_bridge.inbound.normalize import Quarantined
from msgr_bridge.inbound.notify import BusNotifier
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.inbound.pipeline import InboundPipeline
from msgr_bridge.inbound.records import Stored
from msgr_bridge.inbound.sink import AccountSink
from msgr_bridge.schema import Account, Event, Message
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import MessageRow
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.quarantine import QuarantineRepo

NET = "handoff-t"


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 (polls the pipeline's counters)
            await anyio.sleep(0.01)


def ids(events: Sequence[Event]) -> list[str]:
    return [e.remote_id for e in events if isinstance(e, Message)]


class GatedStore:
    """The real store, whose next ``persist`` can be made to wait (``hold``) or to fail as an outage
    (``down``); every call is written to the shared ``journal``."""

    def __init__(self, db: Database, journal: list[tuple[str, list[str]]]) -> None:
        self.inner = DatabaseInboundStore(db)
        self.journal = journal
        self.gate: anyio.Event | None = None
        self.waiting = 0
        self.down = False

    def hold(self) -> anyio.Event:
        self.gate = anyio.Event()
        return self.gate

    async def persist(self, tenant: str, events: Sequence[Event], quarantined: Sequence[Quarantined]) -> Any:
        self.journal.append(("persist", ids(events)))
        if (gate := self.gate) is not None:
            self.gate = None
            self.waiting += 1
            await gate.wait()
        if self.down:
            raise DatabaseError("the database went away", hint="a test outage")
        return await self.inner.persist(tenant, events, quarantined)

    async def reachable(self) -> bool:
        return not self.down and await self.inner.reachable()


class JournalNotifier(BusNotifier):
    def __init__(self, bus: MemoryBus, journal: list[tuple[str, list[str]]]) -> None:
        super().__init__(bus)
        self.journal = journal

    async def notify(self, tenant: str, stored: Sequence[Stored], ephemeral: Sequence[Event]) -> None:
        self.journal.append(("notify", ids([s.event for s in stored if s.seq is not None])))
        await super().notify(tenant, stored, ephemeral)


@dataclass
class Rig:
    db: Database
    bus: MemoryBus
    net: LoopbackNetwork
    store: GatedStore
    pipeline: InboundPipeline
    tg: TaskGroup
    sink: AccountSink
    journal: list[tuple[str, list[str]]] = field(default_factory=list)

    async def push(self, payload: dict[str, Any]) -> None:
        """Push a payload whose ack writes ``ack`` to the journal."""

        async def ack() -> None:
            self.journal.append(("ack", [payload["id"]]))

        await self.sink.push(payload, ack=ack)

    async def count(self, remote_id: str | None = None) -> int:
        stmt = select(func.count()).select_from(MessageRow)
        if remote_id is not None:
            stmt = stmt.where(MessageRow.remote_id == remote_id)
        async with self.db.read() as s:
            return int(await s.scalar(stmt) or 0)


@asynccontextmanager
async def rig(db: Database) -> AsyncIterator[Rig]:
    LoopbackNetwork.reset(NET)
    net = LoopbackNetwork.get(NET)
    for user in ("alice", "bob"):
        net.add_user(user, user.title(), password="pw")
    net.create_group("g1", "Group", ["alice", "bob"])
    account = Account(id="acc-alice", network="loopback", remote_user_id="alice")
    await AccountRepo(db).create(account)
    bus = MemoryBus()
    journal: list[tuple[str, list[str]]] = []
    store = GatedStore(db, journal)
    pipeline = InboundPipeline(
        bus=bus,
        tenant="default",
        converters={"loopback": LoopbackConnector.convert},
        store=store,
        notifier=JournalNotifier(bus, journal),
        max_batch=64,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(pipeline.run)
        yield Rig(db, bus, net, store, pipeline, tg, AccountSink(bus, account), journal)
        tg.cancel_scope.cancel()
    LoopbackNetwork.reset(NET)


async def first_batch_held(r: Rig) -> tuple[anyio.Event, dict[str, Any]]:
    """Batch N (one message) taken and waiting in ``persist``."""
    gate = r.store.hold()
    first = r.net.post("g1", "bob", "first")
    await r.push(first)
    await eventually(lambda: r.store.waiting == 1)
    return gate, first


async def test_the_next_batch_is_prepared_while_one_commits_and_a_copy_in_it_is_stored_once(
    db: Database,
) -> None:
    async with rig(db) as r:
        gate, first = await first_batch_held(r)
        await r.push(first)  # the same message again (a redelivery), while batch N is not committed
        second = r.net.post("g1", "bob", "second")
        await r.push(second)
        await eventually(lambda: r.pipeline.stats.received == 3)  # taken and prepared meanwhile
        assert r.pipeline.stats.duplicates == 0  # the dedupe cache cannot know it yet: the database will
        assert r.journal == [("persist", [first["id"]])]
        gate.set()
        await eventually(lambda: r.pipeline.stats.batches == 2 and len(r.journal) == 7)
        assert r.pipeline.stats.created == 2 and r.pipeline.stats.duplicates == 1
        assert await r.count(first["id"]) == 1 and await r.count() == 2
        assert r.journal == [
            ("persist", [first["id"]]),
            ("ack", [first["id"]]),
            ("notify", [first["id"]]),
            ("persist", [first["id"], second["id"]]),  # both arrivals while N committed: one batch
            ("ack", [first["id"]]),
            ("ack", [second["id"]]),
            ("notify", [second["id"]]),  # the copy is a duplicate: nothing to announce
        ]


async def test_an_outage_while_the_next_batch_waits_delays_both_in_order(db: Database) -> None:
    async with rig(db) as r:
        gate, first = await first_batch_held(r)
        r.store.down = True
        later = [r.net.post("g1", "bob", f"later {i}") for i in range(3)]
        for p in later:
            await r.push(p)
        gate.set()
        await eventually(lambda: r.pipeline.stats.persist_retries >= 2)
        assert r.pipeline.stats.received == 4
        assert not any(kind in ("ack", "notify") for kind, _ in r.journal)  # nothing committed yet
        r.store.down = False
        await eventually(lambda: r.pipeline.stats.created == 4)
        await eventually(lambda: [k for k, _ in r.journal][-1] == "notify")
        committed = [(k, v) for k, v in r.journal if (k, v) != ("persist", [first["id"]])]
        assert committed == [
            ("ack", [first["id"]]),
            ("notify", [first["id"]]),
            ("persist", [p["id"] for p in later]),
            *[("ack", [p["id"]]) for p in later],
            ("notify", [p["id"] for p in later]),
        ]
        assert await r.count() == 4


async def test_a_refused_event_is_quarantined_alone_while_the_next_batch_waits(db: Database) -> None:
    """A lone surrogate in an id: both databases refuse it (``test_pipeline``); the batch is split, the
    refused event quarantined, the rest stored, and the batch prepared meanwhile follows."""
    async with rig(db) as r:
        gate = r.store.hold()
        good = r.net.post("g1", "bob", "fine")
        bad = r.net.post("g1", "bob", "odd id", message_id="m\udcff")
        await r.push(good)
        await r.push(bad)
        await eventually(lambda: r.store.waiting == 1)
        after = r.net.post("g1", "bob", "after")
        await r.push(after)
        await eventually(lambda: r.pipeline.stats.received == 3)
        gate.set()
        await eventually(lambda: r.pipeline.stats.created == 2 and r.pipeline.stats.refused == 1)
        await eventually(lambda: r.journal[-1] == ("notify", [after["id"]]))
        notified = [v for k, v in r.journal if k == "notify"]
        assert notified == [[good["id"]], [after["id"]]]
        acked = [v[0] for k, v in r.journal if k == "ack"]
        assert acked == [good["id"], bad["id"], after["id"]]
        (q,) = await QuarantineRepo(r.db).list(network="loopback")
        assert q.error.startswith("the database refused it: ")


async def test_shutdown_waits_for_the_committing_and_the_prepared_batch(db: Database) -> None:
    """The bus's drain must not end (and the bridge stop) while a batch is committing and the next is
    prepared: the receiver already asked the bus for more, which alone would tell drain it is done."""
    async with rig(db) as r:
        gate, _ = await first_batch_held(r)
        await r.push(r.net.post("g1", "bob", "second"))
        await eventually(lambda: r.pipeline.stats.received == 2)
        created_when_drained: list[int] = []

        async def drain() -> None:
            await r.bus.drain(timeout=30)
            created_when_drained.append(r.pipeline.stats.created)

        r.tg.start_soon(drain)
        await anyio.wait_all_tasks_blocked()
        assert created_when_drained == []
        gate.set()
        await eventually(lambda: bool(created_when_drained))
        assert created_when_drained == [2]


async def test_a_bug_in_the_store_ends_the_pipeline_with_that_error(db: Database) -> None:
    """Not a database error: the pipeline's supervisor sees the error itself, not a group of them."""

    class Broken(DatabaseInboundStore):
        async def persist(self, *args: Any) -> list[Stored]:
            raise RuntimeError("a bug")

    bus = MemoryBus()
    pipeline = InboundPipeline(
        bus=bus,
        tenant="default",
        converters={"loopback": LoopbackConnector.convert},
        store=Broken(db),
        notifier=BusNotifier(bus),
    )
    account = Account(id="acc-alice", network="loopback", remote_user_id="alice")
    LoopbackNetwork.reset(NET)
    net = LoopbackNetwork.get(NET)
    net.add_user("bob", "Bob", password="pw")
    net.create_group("g1", "Group", ["bob"])
    ended: list[BaseException] = []

    async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await pipeline.run(task_status=task_status)
        except Exception as exc:
            ended.append(exc)

    async with anyio.create_task_group() as tg:
        await tg.start(run)
        await AccountSink(bus, account).push(net.post("g1", "bob", "hi"))
    LoopbackNetwork.reset(NET)
    (error,) = ended
    assert type(error) is RuntimeError and str(error) == "a bug"
