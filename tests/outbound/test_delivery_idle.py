"""An idle delivery worker looks at the outbox with one read per ``idle_poll_s`` and claims nothing (claiming
takes the write lock), yet still finds what another process queued; what this process queues, retries or
schedules needs no look at all (issue 19: idle CPU, and two reads per lone send)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import anyio

from msgr_bridge.errors import TransientError
from msgr_bridge.outbound.service import OutboundService
from msgr_bridge.store.repos import OutboxState
from msgr_bridge.store.types import utcnow

from .conftest import FAST, Harness, until


async def test_an_idle_worker_reads_once_per_poll_and_claims_only_what_is_due(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        claims: list[int] = []
        claim_due = h.worker.outbox.claim_due_in  # what the worker's claim transaction runs

        def counted(*args: Any, **kwargs: Any) -> Any:
            claimed = claim_due(*args, **kwargs)
            claims.append(len(claimed))
            return claimed

        h.worker.outbox.claim_due_in = counted  # type: ignore[method-assign]
        await h.start_worker()
        await anyio.sleep(FAST.idle_poll_s * 3)  # three fallback polls with nothing queued
        assert claims == [0]  # the first look at start, then reads only
        # Another process queues a send (nothing wakes this worker): the next poll's read finds it.
        other = OutboundService(h.db, h.bus, h.impersonation, wake=lambda *_, **__: None)
        entry = await other.submit(h.request("from the CLI"))
        await h.wait_for(entry.id, OutboxState.SENT, timeout=5)
        assert h.sent_texts() == ["from the CLI"]
        assert claims[1:2] == [1]


async def test_work_queued_while_every_lane_is_busy_waits_for_a_lane_without_spinning(
    harness: Harness,
) -> None:
    async with harness.live(settings=replace(FAST, concurrency=1)) as h:
        await h.connect()
        entered = 0
        idle = h.worker._idle

        async def counted() -> None:
            nonlocal entered
            entered += 1
            if entered > 100:  # a loop that never awaits would starve the test, so fail it from inside
                raise AssertionError("the delivery worker spins while its lanes are full")
            await idle()

        h.worker._idle = counted  # type: ignore[method-assign]
        h.worker.lanes.add(("another-account", "a busy conversation"))  # the one lane allowed is busy
        await h.start_worker()
        entry = await h.service.submit(h.request("waits for a lane"))  # wakes the worker: new work
        await anyio.sleep(FAST.idle_poll_s)
        assert (await h.outbox.get(entry.id)).state is OutboxState.QUEUED  # type: ignore[union-attr]
        assert entered < 10
        h.worker.lanes.clear()  # the busy lane ends
        h.worker.waking.event.set()
        await h.wait_for(entry.id, OutboxState.SENT, timeout=5)


def count_reads(h: Harness) -> list[int]:
    """Counts the worker's reads of the outbox's due times (``next_due``)."""
    reads: list[int] = []
    next_due = h.worker.ops.next_due

    async def counted() -> Any:
        reads.append(1)
        return await next_due()

    h.worker.ops.next_due = counted  # type: ignore[method-assign]
    return reads


SLOW_POLL = replace(FAST, idle_poll_s=60.0)
"""Only the first look at the outbox falls inside a test: everything after it must be known in memory."""


async def test_lone_sends_retries_and_scheduled_sends_need_no_look_at_the_outbox(harness: Harness) -> None:
    async with harness.live(settings=SLOW_POLL) as h:
        await h.connect()
        reads = count_reads(h)
        await h.start_worker()
        for text in ("one", "two", "three"):  # one at a time, each delivered before the next
            entry = await h.service.submit(h.request(text))
            await h.wait_for(entry.id, OutboxState.SENT, timeout=5)
        h.net.inject_fault("send", TransientError("flaky"))  # retried after a back-off known in memory
        entry = await h.service.submit(h.request("four"))
        await h.wait_for(entry.id, OutboxState.SENT, timeout=5)
        later = await h.service.submit(h.request("five", send_at=utcnow() + timedelta(seconds=0.3)))
        await h.wait_for(later.id, OutboxState.SENT, timeout=5)
        assert h.sent_texts() == ["one", "two", "three", "four", "five"]
        assert len(reads) == 1  # the look when the worker first went idle


async def test_entries_queued_behind_a_busy_conversation_go_when_its_lane_ends(harness: Harness) -> None:
    async with harness.live(settings=SLOW_POLL) as h:
        await h.connect()
        reads = count_reads(h)
        await h.start_worker()
        entries = [await h.service.submit(h.request(f"m{i}")) for i in range(20)]  # while lanes are busy
        for entry in entries:
            await h.wait_for(entry.id, OutboxState.SENT, timeout=5)
        assert h.sent_texts() == [f"m{i}" for i in range(20)]
        assert len(reads) == 1


async def test_sends_queued_behind_a_busy_lane_are_claimed_once_when_it_ends(harness: Harness) -> None:
    """A claim made while a send's conversation is being delivered would leave it out: such a send does
    not wake the worker, and the lane's end claims everything queued behind it at once."""
    async with harness.live(settings=SLOW_POLL) as h:
        connector = await h.connect()
        claims: list[int] = []
        claim_due = h.worker.outbox.claim_due_in  # what the worker's claim transaction runs

        def counted(*args: Any, **kwargs: Any) -> Any:
            claimed = claim_due(*args, **kwargs)
            claims.append(len(claimed))
            return claimed

        h.worker.outbox.claim_due_in = counted  # type: ignore[method-assign]
        release = anyio.Event()
        send = connector.send_message

        async def slow(conv: str, message: Any) -> Any:
            await release.wait()
            return await send(conv, message)

        connector.send_message = slow  # type: ignore[method-assign]
        await h.start_worker()
        first = await h.service.submit(h.request("first"))
        await until(lambda: bool(h.worker.lanes))
        behind = [await h.service.submit(h.request(f"behind {i}")) for i in range(5)]
        await anyio.sleep(0.1)
        assert claims == [0, 1]  # the look at start, then the first send's claim: nothing while it is busy
        release.set()
        for entry in [first, *behind]:
            await h.wait_for(entry.id, OutboxState.SENT, timeout=5)
        assert claims[2:3] == [5]  # the lane's end claimed the five at once
        assert h.sent_texts() == ["first"] + [f"behind {i}" for i in range(5)]
