"""An idle delivery worker looks at the outbox with one read per poll interval and claims nothing (claiming
takes the write lock), yet still finds what another process queued (issue 19: idle CPU)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio

from msgr_bridge.outbound.service import OutboundService
from msgr_bridge.store.repos import OutboxState

from .conftest import FAST, Harness


async def test_an_idle_worker_reads_once_per_poll_and_claims_only_what_is_due(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        claims: list[int] = []
        claim_due = h.worker.outbox.claim_due

        async def counted(*args: Any, **kwargs: Any) -> Any:
            claimed = await claim_due(*args, **kwargs)
            claims.append(len(claimed))
            return claimed

        h.worker.outbox.claim_due = counted  # type: ignore[method-assign]
        await h.start_worker()
        await anyio.sleep(FAST.poll_interval_s * 10)  # ten poll intervals with nothing queued
        assert claims == [0]  # the first look at start, then reads only
        # Another process queues a send (nothing wakes this worker): the next poll's read finds it.
        other = OutboundService(h.db, h.bus, h.impersonation, wake=lambda: None)
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
        await anyio.sleep(FAST.poll_interval_s * 4)
        assert (await h.outbox.get(entry.id)).state is OutboxState.QUEUED  # type: ignore[union-attr]
        assert entered < 10
        h.worker.lanes.clear()  # the busy lane ends
        h.worker._wakeup.set()
        await h.wait_for(entry.id, OutboxState.SENT, timeout=5)
