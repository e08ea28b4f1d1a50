"""Delivery through the real loopback connector: back-off, failures, dead letters, echoes, crash recovery
and per-conversation order, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import anyio
import pytest
from msgr_bridge_loopback import LoopbackConnector
from sqlalchemy import func, select
from structlog.testing import capture_logs

from msgr_bridge.errors import PermanentError, RateLimited, TransientError
from msgr_bridge.inbound.dedupe import DedupeCache
from msgr_bridge.inbound.normalize import Quarantined
from msgr_bridge.inbound.notify import BusNotifier
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.inbound.pipeline import InboundPipeline
from msgr_bridge.inbound.sink import RawInbound
from msgr_bridge.outbound.delivery import DeliveryWorker
from msgr_bridge.outbound.ratelimit import Limit
from msgr_bridge.schema import DeliveryState, DeliveryStatus, Event, Message, OutboundMessage
from msgr_bridge.store.models import MessageRow
from msgr_bridge.store.repos import AccountRepo, EventLogRepo, MessageRepo, OutboxState

from .conftest import ACCOUNT, FAST, ROOM, TENANT, Harness, until


async def stored_messages(h: Harness) -> list[MessageRow]:
    async with h.db.session() as s:
        return list((await s.scalars(select(MessageRow).order_by(MessageRow.id))).all())


async def test_send_stores_the_message_and_publishes_sent(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        async with h.bus.subscribe(f"{TENANT}.loopback.delivery") as sub:
            await h.start_worker()
            entry = await h.service.submit(h.request("hello"))
            sent = await h.wait_for(entry.id, OutboxState.SENT)
            states: list[DeliveryState] = []
            while len(states) < 2:
                states += [env.message.state for env in await sub.receive_batch()]
        assert states == [DeliveryState.QUEUED, DeliveryState.SENT]
        (payload,) = [p for p in h.net.log if p["type"] == "message"]
        assert payload["txn_id"] == entry.txn_id and sent.remote_id == payload["id"]
        (row,) = await stored_messages(h)
        assert (row.remote_id, row.txn_id, row.outbox_id, row.sender_id) == (
            payload["id"],
            entry.txn_id,
            entry.id,
            "me",
        )
        assert await MessageRepo(h.db).accounts_for(row.id) == [ACCOUNT]
        assert [a.outcome for a in await h.outbox.attempts(entry.id)] == ["sent"]


async def test_a_send_recorded_while_the_bus_drains_does_not_crash_the_worker(harness: Harness) -> None:
    """Shutdown closes the bus while the worker commits a send: the rows are committed and the worker goes
    on (the stored event is in the event log for stream clients), instead of BusClosed escaping the
    worker's task group and failing the bridge's stop."""
    async with harness.live() as h:
        await h.connect()
        entry = await h.service.submit(h.request("sent while shutting down"))
        await h.bus.drain(0)
        await h.start_worker()
        sent = await h.wait_for(entry.id, OutboxState.SENT)
        (row,) = await stored_messages(h)
        assert (row.remote_id, row.txn_id) == (sent.remote_id, entry.txn_id)


async def test_edit_delete_react_and_read_reach_the_network(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        first = await h.wait_for((await h.service.submit(h.request("v1"))).id, OutboxState.SENT)
        mid = first.remote_id
        for req in (
            h.request("v2", action="edit", target_id=mid),
            h.request(action="react", target_id=mid, emoji="+1"),
            h.request(action="mark_read", up_to_id=mid),
            h.request(action="delete", target_id=mid),
        ):
            await h.wait_for((await h.service.submit(req)).id, OutboxState.SENT)
        assert [p["type"] for p in h.net.log] == ["message", "edit", "reaction", "read", "delete"]
        (row,) = await stored_messages(h)
        assert row.deleted_at is not None and row.edit_version == 1


async def test_rate_limit_is_honoured_without_burning_attempts(harness: Harness) -> None:
    harness.net.inject_fault("send", RateLimited(retry_after=0.2))
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        entry = await h.service.submit(h.request("patience"))
        sent = await h.wait_for(entry.id, OutboxState.SENT)
        attempts = await h.outbox.attempts(entry.id)
        assert [a.outcome for a in attempts] == ["rate_limited", "sent"]
        assert (attempts[1].started_at - attempts[0].started_at).total_seconds() >= 0.2
        assert sent.attempts == 1  # the 429 did not count toward max_attempts
        assert h.sends_with_txn(entry.txn_id) == 1
        assert h.worker.stats.rate_limited == 1


async def test_an_account_paced_faster_than_its_network_is_not_held_to_the_network_rate(
    harness: Harness,
) -> None:
    # The network declares 2 sends/s; this account's settings raise it to 20/s (IRC's flood_rate), which its
    # connector reports in conversation_capabilities(). No wait is allowed inline, so any wait the core
    # limiter asked for would count in stats.waited: ten sends at 2/s would wait nine times.
    async with harness.live(settings=replace(FAST, inline_wait_max_s=0.0)) as h:
        h.worker.limiter.set_limit("loopback", Limit(2.0, 1))
        connector = await h.connect()
        fast = connector.capabilities.model_copy(update={"rate_limit_per_s": 20.0, "rate_limit_burst": 20})
        connector.conversation_capabilities = lambda conversation_id: fast  # type: ignore[method-assign]
        await h.start_worker()
        entries = [await h.service.submit(h.request(f"quick {i}")) for i in range(10)]
        for entry in entries:
            await h.wait_for(entry.id, OutboxState.SENT)
        assert h.worker.stats.waited == 0
        assert h.sent_texts() == [f"quick {i}" for i in range(10)]


async def test_sends_during_a_back_off_wait_for_its_end_without_being_claimed(harness: Harness) -> None:
    harness.net.inject_fault("send", RateLimited(retry_after=0.6))
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        first = await h.service.submit(h.request("first"))
        # the 429 is counted, then (after reading the entry's earlier attempts) the conversation is held
        await until(lambda: h.worker.holds.until(ACCOUNT, ROOM) is not None)
        held_until = h.worker.holds.until(ACCOUNT, ROOM)
        assert held_until is not None and h.worker.stats.rate_limited == 1
        later = [await h.service.submit(h.request(f"later {i}")) for i in range(3)]
        # Queued as due when the back-off ends: the worker does not claim them before.
        assert all(e.next_attempt_at >= held_until for e in later)
        await anyio.sleep(0.2)
        assert h.worker.stats.claimed == 1
        await h.wait_for(later[-1].id, OutboxState.SENT)
        assert h.sent_texts() == ["first", "later 0", "later 1", "later 2"]
        assert h.worker.stats.claimed == 5  # the first twice (429, then sent), each later one once
        assert h.worker.holds.until(ACCOUNT, ROOM) is None
        assert (await h.outbox.get(first.id)).state is OutboxState.SENT  # type: ignore[union-attr]


async def test_rate_limits_never_dead_letter(harness: Harness) -> None:
    harness.net.inject_fault("send", RateLimited(retry_after=0.01), times=FAST.max_attempts + 2)
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        entry = await h.service.submit(h.request("eventually"))
        sent = await h.wait_for(entry.id, OutboxState.SENT)
        assert sent.attempts == 1 and h.sent_texts() == ["eventually"]


async def test_permanent_failure_fails_with_its_reason(harness: Harness) -> None:
    harness.net.inject_fault("send", PermanentError("conversation is gone"))
    async with harness.live() as h:
        await h.connect()
        async with h.bus.subscribe(f"{TENANT}.loopback.delivery") as sub:
            await h.start_worker()
            entry = await h.service.submit(h.request("lost cause"))
            failed = await h.wait_for(entry.id, OutboxState.FAILED)
            statuses: list[DeliveryStatus] = []
            while len(statuses) < 2:
                statuses += [env.message for env in await sub.receive_batch()]
        assert failed.last_error is not None and "conversation is gone" in failed.last_error
        assert statuses[-1].state is DeliveryState.FAILED and statuses[-1].reason == failed.last_error
        assert failed.attempts == 1 and h.sent_texts() == []


async def test_transient_failures_dead_letter_with_an_alert_then_operator_retry(harness: Harness) -> None:
    harness.net.inject_fault("send", TransientError("server hiccup"), times=FAST.max_attempts)
    async with harness.live() as h:
        await h.connect()
        with capture_logs() as logs:
            await h.start_worker()
            entry = await h.service.submit(h.request("stubborn"))
            dead = await h.wait_for(entry.id, OutboxState.DEAD)
        assert [a.outcome for a in await h.outbox.attempts(entry.id)] == ["retry", "retry", "dead"]
        assert dead.last_error is not None and "server hiccup" in dead.last_error
        alerts = [e for e in logs if e["event"] == "alert"]
        assert len(alerts) == 1 and alerts[0]["log_level"] == "error"
        assert alerts[0]["alert"] == "outbound.dead_lettered" and alerts[0]["outbox_id"] == entry.id
        assert h.worker.stats.dead_lettered == 1 and h.sent_texts() == []
        events = await EventLogRepo(h.db).read_after(0, limit=100)
        mine = [e.payload["state"] for e in events if e.payload.get("outbox_id") == entry.id]
        assert mine[-1] == "dead" == dead.state.value  # the status names the outbox's state (was "failed")

        from msgr_bridge.cli_outbox import retry_entry

        await retry_entry(h.db, entry.id)
        h.worker.wake()
        sent = await h.wait_for(entry.id, OutboxState.SENT)
        assert sent.txn_id == entry.txn_id and h.sent_texts() == ["stubborn"]


def loopback_pipeline(
    h: Harness, store: DatabaseInboundStore, dedupe: DedupeCache | None = None
) -> InboundPipeline:
    return InboundPipeline(
        bus=h.bus,
        tenant=TENANT,
        converters={"loopback": LoopbackConnector.convert},
        store=store,
        notifier=BusNotifier(h.bus),
        dedupe=dedupe,
    )


async def test_echo_of_our_own_send_is_not_stored_twice(harness: Harness) -> None:
    async with harness.live() as h:
        store = DatabaseInboundStore(h.db)
        pipeline = loopback_pipeline(h, store)
        await h.tg.start(pipeline.run)
        await h.connect(sink=h.account_sink())
        await h.start_worker()
        entry = await h.service.submit(h.request("echo me"))
        await h.wait_for(entry.id, OutboxState.SENT)
        await until(lambda: pipeline.stats.created + pipeline.stats.duplicates >= 1)  # the echo is in
        # Whichever stored it first (the echo can outrun the worker's commit), it is stored once.
        assert pipeline.stats.created + pipeline.stats.duplicates == 1
        (row,) = await stored_messages(h)
        assert row.txn_id == entry.txn_id and row.outbox_id == entry.id

        # The same echo arriving again (say, through catch-up after a reconnect) is a duplicate too.
        (echo_payload,) = [p for p in h.net.log if p["type"] == "message"]
        account = (await AccountRepo(h.db).get(ACCOUNT)).to_schema()  # type: ignore[union-attr]
        (echo,) = LoopbackConnector.convert(echo_payload, account)
        assert isinstance(echo, Message) and echo.sender.is_self and echo.txn_id == entry.txn_id
        (outcome,) = await store.persist(TENANT, [echo], [])
        assert outcome.outcome == "duplicate"
        assert len(await stored_messages(h)) == 1


async def test_an_echo_after_the_record_is_dropped_before_any_database_work(harness: Harness) -> None:
    cache = DedupeCache()
    async with harness.live(dedupe=cache) as h:
        store = CountingStore(h.db)
        pipeline = loopback_pipeline(h, store, cache)
        await h.connect()  # no sink: the live echo is not pushed; the test pushes it after the record
        await h.start_worker()
        entry = await h.service.submit(h.request("echo me"))
        sent = await h.wait_for(entry.id, OutboxState.SENT)
        assert sent.remote_id is not None
        assert cache.seen(ACCOUNT, ("loopback", ROOM, sent.remote_id, 0))

        (echo_payload,) = [p for p in h.net.log if p["type"] == "message"]
        account = (await AccountRepo(h.db).get(ACCOUNT)).to_schema()  # type: ignore[union-attr]
        await pipeline.process([RawInbound(account=account, payload=echo_payload)])
        assert pipeline.stats.duplicates == 1 and pipeline.stats.created == 0
        assert store.persisted == 0  # the cache answered; nothing reached the database
        assert len(await stored_messages(h)) == 1


class CountingStore(DatabaseInboundStore):
    persisted = 0

    async def persist(self, tenant: str, events: Sequence[Event], quarantined: Sequence[Quarantined]) -> Any:
        self.persisted += len(events)
        return await super().persist(tenant, events, quarantined)


async def _crashed_worker_claims(h: Harness, text: str) -> tuple[str, str]:
    """A worker claimed the entry, marked it on the wire (both committed) and was killed while writing it:
    the entry is left 'sending', possibly sent."""
    entry = await h.service.submit(h.request(text))
    (claimed,) = await h.outbox.claim_due()
    assert claimed.id == entry.id and claimed.state is OutboxState.SENDING
    await h.outbox.mark_on_wire([claimed.id])
    return entry.id, entry.txn_id


async def test_recovery_sends_an_interrupted_entry_exactly_once(harness: Harness) -> None:
    async with harness.live() as h:
        outbox_id, txn_id = await _crashed_worker_claims(h, "crash before send")
        await h.connect()
        await h.start_worker()  # the restart
        sent = await h.wait_for(outbox_id, OutboxState.SENT)
        assert h.sends_with_txn(txn_id) == 1 and sent.txn_id == txn_id
        outcomes = [a.outcome for a in await h.outbox.attempts(outbox_id)]
        assert outcomes == ["interrupted", "sent"]
        assert h.worker.stats.recovered == 1 and h.worker.stats.echo_matched == 0


async def test_recovery_does_not_resend_what_the_platform_already_has(harness: Harness) -> None:
    async with harness.live() as h:
        outbox_id, txn_id = await _crashed_worker_claims(h, "crash after send")
        connector = await h.connect()
        # The killed worker's call had reached the platform ...
        result = await connector.send_message(ROOM, OutboundMessage(txn_id=txn_id, text="crash after send"))
        # ... and after the restart, catch-up brings the echo in through the inbound pipeline.
        account = (await AccountRepo(h.db).get(ACCOUNT)).to_schema()  # type: ignore[union-attr]
        (payload,) = [p for p in h.net.log if p["type"] == "message"]
        (stored,) = await DatabaseInboundStore(h.db).persist(
            TENANT, LoopbackConnector.convert(payload, account), []
        )
        assert stored.outcome == "created"
        await h.start_worker()
        sent = await h.wait_for(outbox_id, OutboxState.SENT)
        assert sent.remote_id == result.remote_id
        assert h.sends_with_txn(txn_id) == 1
        assert h.worker.stats.echo_matched == 1
        assert len(await stored_messages(h)) == 1


async def test_order_per_conversation_survives_retries(harness: Harness) -> None:
    harness.net.inject_fault("send", TransientError("flaky"), times=2)
    async with harness.live(settings=replace(FAST, max_attempts=5)) as h:
        await h.connect()
        entries = [await h.service.submit(h.request(f"#{i}")) for i in range(1, 6)]
        other = await h.service.submit(h.request("elsewhere", conversation_id="room-2"))
        await h.start_worker()
        for e in [*entries, other]:
            await h.wait_for(e.id, OutboxState.SENT)
        assert h.sent_texts() == [f"#{i}" for i in range(1, 6)]
        assert h.sent_texts("room-2") == ["elsewhere"]
        for e in entries[1:]:
            sent = await h.outbox.get(e.id)
            assert sent is not None and sent.attempts == 1  # waiting behind #1 used no attempts


async def test_account_not_connected_waits_without_using_attempts(harness: Harness) -> None:
    async with harness.live() as h:
        await h.start_worker()
        entry = await h.service.submit(h.request("when you are back"))
        await until(lambda: h.worker.stats.waited >= 2)
        # Waiting leaves no finished attempt behind (at most the claim in flight right now is open).
        assert [a for a in await h.outbox.attempts(entry.id) if a.finished_at is not None] == []
        await h.connect()
        sent = await h.wait_for(entry.id, OutboxState.SENT)
        assert sent.attempts == 1 and h.sent_texts() == ["when you are back"]


async def test_worker_stops_cleanly_on_cancel(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        worker = DeliveryWorker(h.db, h.bus, h.impersonation, settings=FAST)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                entry = await h.service.submit(h.request("before stop"))
                worker.wake()
                await h.wait_for(entry.id, OutboxState.SENT)
                scope.cancel()
        assert scope.cancelled_caught
        async with h.db.session() as s:
            count = await s.scalar(select(func.count()).select_from(MessageRow))
        assert count == 1


@pytest.mark.parametrize("retry_after", [0.05])
async def test_rate_limit_holds_the_rest_of_the_conversation(harness: Harness, retry_after: float) -> None:
    harness.net.inject_fault("send", RateLimited(retry_after=retry_after))
    async with harness.live() as h:
        await h.connect()
        entries = [await h.service.submit(h.request(f"r{i}")) for i in range(3)]
        await h.start_worker()
        for e in entries:
            await h.wait_for(e.id, OutboxState.SENT)
        assert h.sent_texts() == ["r0", "r1", "r2"]


async def test_delivered_and_read_reports_move_forward_only(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        entry = await h.wait_for((await h.service.submit(h.request("seen?"))).id, OutboxState.SENT)
        async with h.bus.subscribe(f"{TENANT}.loopback.delivery") as sub:
            read = await h.service.report_status(entry.id, DeliveryState.READ)
            assert read is not None and read.state is OutboxState.READ
            assert await h.service.report_status(entry.id, DeliveryState.DELIVERED) is None
            (env,) = await sub.receive_batch()
        assert env.message.state is DeliveryState.READ and env.message.remote_id == entry.remote_id
