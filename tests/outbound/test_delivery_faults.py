"""Delivery under faults (issue 10): a send that can never pass is dead-lettered instead of holding its
conversation; a slow conversation does not hold back the others; each send is marked on the wire before it
is written and its result committed right after; a database outage is waited out. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from structlog.testing import capture_logs

from msgr_bridge.errors import RateLimited
from msgr_bridge.schema import OutboundMessage, SendResult
from msgr_bridge.store.models import DeliveryAttempt, OutboxRow
from msgr_bridge.store.repos import OutboxState

from .conftest import FAST, ROOM, Harness, until

OTHER = "room-2"
Send = Callable[[str, OutboundMessage], Awaitable[SendResult]]


def patch_send(h: Harness, wrap: Callable[[Send], Send]) -> None:
    """Put ``wrap`` around the live connector's ``send_message`` (what the network does on a send)."""
    assert h.connector is not None
    original: Send = h.connector.send_message
    h.connector.send_message = wrap(original)  # type: ignore[method-assign]


def outage() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


# --- item 3: a send that can never pass ------------------------------------------------------------------


async def test_a_rate_limit_that_never_passes_is_dead_lettered_with_an_alert(harness: Harness) -> None:
    limit = 20  # the default of [outbound] max_identical_rate_limits

    def stuck(send: Send) -> Send:
        async def wrapped(conv: str, message: OutboundMessage) -> SendResult:
            if message.text == "never passes":
                raise RateLimited(0.01, "the same refusal every time")
            return await send(conv, message)

        return wrapped

    async with harness.live() as h:
        await h.connect()
        patch_send(h, stuck)
        with capture_logs() as logs:
            await h.start_worker()
            stuck_entry = await h.service.submit(h.request("never passes"))
            later = [await h.service.submit(h.request(f"later {i}")) for i in range(2)]
            with anyio.fail_after(20):  # the old code refused it (and held the conversation) forever
                dead = await h.wait_for(stuck_entry.id, OutboxState.DEAD)
                for entry in later:
                    await h.wait_for(entry.id, OutboxState.SENT)
        assert dead.last_error is not None and f"{limit} times in a row" in dead.last_error
        assert "the same refusal every time" in dead.last_error
        outcomes = [a.outcome for a in await h.outbox.attempts(stuck_entry.id)]
        assert outcomes == ["rate_limited"] * (limit - 1) + ["dead"]
        (alert,) = [e for e in logs if e["event"] == "alert"]
        assert alert["log_level"] == "error" and alert["alert"] == "outbound.dead_lettered"
        assert alert["outbox_id"] == stuck_entry.id and alert["conversation_id"] == ROOM
        assert "same rate limit" in alert["reason"]
        assert h.sent_texts() == ["later 0", "later 1"]


async def test_a_rate_limit_wait_beyond_the_bound_is_dead_lettered_at_once(harness: Harness) -> None:
    harness.net.inject_fault("send", RateLimited(7200, "come back in two hours"))  # > the default 3600 s
    async with harness.live() as h:
        await h.connect()
        with capture_logs() as logs:
            await h.start_worker()
            first = await h.service.submit(h.request("too patient"))
            second = await h.service.submit(h.request("after it"))
            with anyio.fail_after(10):  # the old code held the conversation for the two hours
                dead = await h.wait_for(first.id, OutboxState.DEAD)
                await h.wait_for(second.id, OutboxState.SENT)
        assert dead.last_error is not None and "max_rate_limit_wait_s" in dead.last_error
        assert [e["outbox_id"] for e in logs if e["event"] == "alert"] == [first.id]
        assert h.sent_texts() == ["after it"]


async def test_rate_limit_waits_adding_up_beyond_the_bound_dead_letter(harness: Harness) -> None:
    settings = replace(FAST, max_rate_limit_wait_s=0.5)
    refusals = iter(range(1_000_000))

    def varying(send: Send) -> Send:
        async def wrapped(conv: str, message: OutboundMessage) -> SendResult:
            if message.text == "slowly refused":  # a different error each time: only the total wait counts
                raise RateLimited(0.2, f"refusal {next(refusals)}")
            return await send(conv, message)

        return wrapped

    async with harness.live(settings=settings) as h:
        await h.connect()
        patch_send(h, varying)
        await h.start_worker()
        entry = await h.service.submit(h.request("slowly refused"))
        with anyio.fail_after(10):
            dead = await h.wait_for(entry.id, OutboxState.DEAD)
        assert dead.last_error is not None and "in all" in dead.last_error
        assert 2 <= len(await h.outbox.attempts(entry.id)) <= 6


# --- item 6: one slow conversation ------------------------------------------------------------------------


def slow_room(seconds: float) -> Callable[[Send], Send]:
    def wrap(send: Send) -> Send:
        async def wrapped(conv: str, message: OutboundMessage) -> SendResult:
            if conv == ROOM:
                await anyio.sleep(seconds)
            return await send(conv, message)

        return wrapped

    return wrap


@pytest.mark.parametrize("same_batch", [True, False], ids=["same-batch", "later-batch"])
async def test_a_slow_conversation_does_not_delay_another(harness: Harness, same_batch: bool) -> None:
    async with harness.live() as h:
        await h.connect()
        patch_send(h, slow_room(30))
        slow = await h.service.submit(h.request("slow network"))
        if not same_batch:
            await h.start_worker()
            await until(lambda: h.worker.stats.claimed == 1)
        fast = await h.service.submit(h.request("quick one", conversation_id=OTHER))
        if same_batch:
            await h.start_worker()
        with anyio.fail_after(5):  # the old code committed (and claimed again) only after the 30 s send
            await h.wait_for(fast.id, OutboxState.SENT)
        assert (await h.outbox.get(slow.id)).state is OutboxState.SENDING  # type: ignore[union-attr]
        assert h.sent_texts(OTHER) == ["quick one"]


# --- item 8: one send per conversation on the wire, recorded as it goes ---------------------------------


async def test_each_send_is_marked_on_the_wire_before_and_recorded_right_after(harness: Harness) -> None:
    seen: list[tuple[str | None, list[str]]] = []

    def observe(send: Send) -> Send:
        async def wrapped(conv: str, message: OutboundMessage) -> SendResult:
            # What a crash at this instant would leave behind, read from the database.
            async with harness.db.read() as s:
                outcome = await s.scalar(
                    select(DeliveryAttempt.outcome)
                    .join(OutboxRow, OutboxRow.id == DeliveryAttempt.outbox_id)
                    .where(OutboxRow.txn_id == message.txn_id, DeliveryAttempt.finished_at.is_(None))
                )
                states = (
                    await s.scalars(select(OutboxRow.state).order_by(OutboxRow.created_at, OutboxRow.id))
                ).all()
            seen.append((outcome, list(states)))
            return await send(conv, message)

        return wrapped

    async with harness.live() as h:
        await h.connect()
        patch_send(h, observe)
        entries = [await h.service.submit(h.request(f"line {i}")) for i in range(4)]
        await h.start_worker()
        await h.wait_for(entries[-1].id, OutboxState.SENT)
    assert [outcome for outcome, _ in seen] == ["on_wire"] * 4
    for i, (_, states) in enumerate(seen):
        # every earlier send is already recorded as sent; this one is the only one that may be on the wire
        assert states[:i] == ["sent"] * i, states
        assert "sent" not in states[i:], states


async def test_after_a_crash_only_the_send_on_the_wire_is_taken_for_possibly_sent(harness: Harness) -> None:
    async with harness.live() as h:
        entries = [await h.service.submit(h.request(f"batch {i}")) for i in range(5)]
        claimed = await h.outbox.claim_due()
        assert len(claimed) == 5
        async with h.db.session() as s:  # killed while writing the first one
            await s.execute(
                update(DeliveryAttempt)
                .where(DeliveryAttempt.outbox_id == claimed[0].id, DeliveryAttempt.finished_at.is_(None))
                .values(outcome="on_wire")
            )
        await h.connect()
        await h.start_worker()  # the restart (echo_grace_s 0.05 in FAST)
        for entry in entries:
            await h.wait_for(entry.id, OutboxState.SENT)
        outcomes = [[a.outcome for a in await h.outbox.attempts(e.id)] for e in entries]
        assert outcomes == [["interrupted", "sent"]] + [["sent"]] * 4
        assert h.sent_texts() == [f"batch {i}" for i in range(5)]


# --- item 5: database outage --------------------------------------------------------------------------


async def test_the_worker_waits_out_a_database_outage(harness: Harness, monkeypatch: Any) -> None:
    async with harness.live() as h:
        await h.connect()
        claim = h.worker.outbox.claim_due_in  # what the worker's claim transaction runs
        failures = {"left": 3}

        def flaky_claim(*args: Any, **kw: Any) -> Any:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise outage()
            return claim(*args, **kw)

        monkeypatch.setattr(h.worker.outbox, "claim_due_in", flaky_claim)
        with capture_logs() as logs:
            await h.start_worker()
            entry = await h.service.submit(h.request("through the outage"))
            await h.wait_for(entry.id, OutboxState.SENT)
        assert failures["left"] == 0 and h.worker.guard.outages == 1 and not h.worker.guard.down
        assert [e["event"] for e in logs if e["event"].startswith("database.")] == [
            "database.unavailable",
            "database.recovered",
        ]


async def test_results_are_committed_once_the_database_is_back(harness: Harness, monkeypatch: Any) -> None:
    async with harness.live() as h:
        await h.connect()
        apply = h.worker.recorder.apply
        failures = {"left": 4}

        async def flaky_apply(*args: Any, **kw: Any) -> Any:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise outage()
            return await apply(*args, **kw)

        monkeypatch.setattr(h.worker.recorder, "apply", flaky_apply)
        await h.start_worker()
        entries = [await h.service.submit(h.request(f"kept {i}")) for i in range(3)]
        for entry in entries:
            await h.wait_for(entry.id, OutboxState.SENT)
        assert failures["left"] == 0
        assert h.sent_texts() == ["kept 0", "kept 1", "kept 2"]  # each once, in order
