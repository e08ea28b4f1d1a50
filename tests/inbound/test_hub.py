"""The event hub sends what the notifications carry while it follows on from its mark, and reads the log
otherwise (a gap, a row announced without its content): every row once, in ``seq`` order."""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio

from msgr_bridge.bus import MemoryBus
from msgr_bridge.inbound.hub import Client, EventHub
from msgr_bridge.inbound.notify import BusNotifier, StoredEvent
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.inbound.pipeline import Stored
from msgr_bridge.schema import Account, Message, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.event_log import EventLogRepo, LoggedEvent
from msgr_bridge.store.tokens import Scope, TokenInfo
from msgr_bridge.testing.waiting import wait_until


class CountingLog(EventLogRepo):
    reads = 0

    async def read_after(self, seq: int, limit: int = 500, **kw: object) -> list[LoggedEvent]:  # type: ignore[override]
        self.reads += 1
        return await super().read_after(seq, limit, **kw)  # type: ignore[arg-type]


def message(i: int) -> Message:
    return Message(
        network="loopback", account_id="a1", conversation_id="g", remote_id=f"r{i}",
        sender=Sender(user_id="bob"), text=f"hello {i}", timestamp=datetime.now(UTC),
    )  # fmt: skip


@asynccontextmanager
async def running_hub(db: Database) -> AsyncIterator[tuple[EventHub, CountingLog, Client, MemoryBus]]:
    await AccountRepo(db).create(Account(id="a1", network="loopback", remote_user_id="alice"), settings={})
    bus, log = MemoryBus(), CountingLog(db)
    hub = EventHub(bus, log, "default")
    token = TokenInfo(
        id="t", tenant="default", name="t", user_id=None, scopes=(Scope.parse("read:*"),),
        created_at=datetime.now(UTC),
    )  # fmt: skip
    async with anyio.create_task_group() as tg:
        await tg.start(hub.run)
        client = hub.register(token, hub.high_water)
        yield hub, log, client, bus
        tg.cancel_scope.cancel()


async def store(db: Database, *numbers: int) -> list[Stored]:
    return await DatabaseInboundStore(db).persist("default", [message(i) for i in numbers], [])


def remote_ids(client: Client) -> list[str]:
    import json

    return [json.loads(data)["event"]["remote_id"] for _, _, data in client.queue]


async def test_rows_announced_with_their_content_are_sent_without_reading_the_log(db: Database) -> None:
    async with running_hub(db) as (_, log, client, bus):
        await BusNotifier(bus).notify("default", await store(db, 1, 2), [])
        await BusNotifier(bus).notify("default", await store(db, 3), [])
        await wait_until(lambda: len(client.queue) == 3)
        assert remote_ids(client) == ["r1", "r2", "r3"]
        assert [seq for seq, _, _ in client.queue] == sorted(seq for seq, _, _ in client.queue)
        assert log.reads == 0


async def test_a_gap_or_a_row_without_content_is_read_from_the_log(db: Database) -> None:
    async with running_hub(db) as (hub, log, client, bus):
        first, second = await store(db, 1), await store(db, 2)
        # The second writer announces first: its row does not follow on from the mark, so the log is read.
        await BusNotifier(bus).notify("default", second, [])
        await wait_until(lambda: len(client.queue) == 2)
        assert remote_ids(client) == ["r1", "r2"] and log.reads == 1
        await BusNotifier(bus).notify("default", first, [])  # late: already sent, not sent again
        (third,) = await store(db, 3)
        assert third.seq is not None
        await bus.publish(
            "default.loopback.stored", StoredEvent(third.seq, "default", third.event, "created")
        )
        await wait_until(lambda: len(client.queue) == 3)
        await anyio.sleep(0.05)
        assert remote_ids(client) == ["r1", "r2", "r3"] and log.reads == 2
        assert hub.high_water == third.seq


async def test_delivery_statuses_carry_their_entry_and_are_sent_as_the_log_would_give_them(
    db: Database,
) -> None:
    from msgr_bridge.inbound.hub import encode
    from msgr_bridge.outbound.statuses import StatusPublisher
    from msgr_bridge.schema import DeliveryState
    from msgr_bridge.store.repos.outbox import OutboxAction, OutboxRepo

    async with running_hub(db) as (_, log, client, bus):
        entry, _ = await OutboxRepo(db).create("default", "a1", "g", OutboxAction.SEND, {"text": "hi"})
        publisher = StatusPublisher(db, bus)
        statuses = [
            publisher.status(entry, DeliveryState.QUEUED),
            publisher.status(entry, DeliveryState.SENT),
        ]
        async with db.session() as s:
            await publisher.store(s, "default", statuses)
        await publisher.publish("default", "loopback", statuses)
        await wait_until(lambda: len(client.queue) == 2)
        assert log.reads == 0  # without the entries the statuses carry, the hub reads the log
        from_log = await EventLogRepo(db).read_after(0)
        assert [data for _, _, data in client.queue] == [encode(row) for row in from_log]
        assert statuses[0].logged == from_log[0] and statuses[0].model_dump()["state"] == "queued"


async def test_a_fanned_out_batch_is_not_held_while_the_hub_waits_for_the_next(db: Database) -> None:
    """Issue 19: the hub's listener kept its last batch of notifications (events with their log entries)
    referenced until another came: a burst's last batch stayed in memory."""
    async with running_hub(db) as (_, _, client, bus):
        await BusNotifier(bus).notify("default", await store(db, 1, 2), [])
        await wait_until(lambda: len(client.queue) == 2)

        def nothing_held() -> bool:
            gc.collect()
            return not any(isinstance(o, StoredEvent) for o in gc.get_objects())

        await wait_until(nothing_held, timeout=5)


async def test_rows_that_follow_on_are_sent_by_the_listener_without_waking_the_tail(db: Database) -> None:
    """The everyday event is fanned out where its notification arrives: the tail (a task switch more per
    event) is only for the log's reads."""
    async with running_hub(db) as (hub, log, client, bus):
        tail_rounds = 0
        next_rows = hub._next_rows

        async def counted() -> list[LoggedEvent]:
            nonlocal tail_rounds
            tail_rounds += 1
            return await next_rows()

        hub._next_rows = counted  # type: ignore[method-assign]
        for i in range(3):
            await BusNotifier(bus).notify("default", await store(db, i), [])
        await wait_until(lambda: len(client.queue) == 3)
        await anyio.sleep(0.05)
        assert remote_ids(client) == ["r0", "r1", "r2"] and log.reads == 0
        assert tail_rounds == 0


async def test_rows_announced_while_the_tail_reads_the_log_wait_for_it(db: Database) -> None:
    """A row that follows on from the mark, announced while the tail reads the log, is left to the tail:
    sent from the listener too, it would reach the client twice (and ahead of the read)."""
    async with running_hub(db) as (_, log, client, bus):
        first, second = await store(db, 1), await store(db, 2)
        reading, release = anyio.Event(), anyio.Event()
        read_after = log.read_after

        async def slow(seq: int, limit: int = 500, **kw: object) -> list[LoggedEvent]:
            reading.set()
            await release.wait()
            return await read_after(seq, limit, **kw)

        log.read_after = slow  # type: ignore[method-assign]
        await BusNotifier(bus).notify("default", second, [])  # a gap: the tail reads the log
        await reading.wait()
        await BusNotifier(bus).notify("default", first, [])  # follows on from the mark
        await anyio.sleep(0.05)
        assert client.queue == deque()
        release.set()
        await wait_until(lambda: len(client.queue) == 2)
        await anyio.sleep(0.05)
        assert remote_ids(client) == ["r1", "r2"]
