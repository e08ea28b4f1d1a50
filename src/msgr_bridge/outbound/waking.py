"""When the idle delivery worker has something to do, known in memory so it seldom reads the outbox.

An idle worker used to read the outbox's earliest due time once per poll interval and after every lane's
end: about half a millisecond of CPU each, which was most of an idle bridge's cost and two reads per lone
send. Almost everything that makes work due happens in this process and is known here:

* a send accepted by this process (``OutboundService``) wakes the worker (``wake()``), or, when it is due
  later (a scheduled send, a conversation on hold), tells it when (``wake(at)``);
* a lane's retries, back-offs and held entries are due at their ``until`` (``hint``);
* recovered sends wait for their echo until a known time.

So the worker claims at once when woken, and otherwise sleeps until the earliest known due time. What
another process queues (``msgr-bridge outbox retry``, a second worker) is found by a slower fallback look at
the outbox every ``idle_poll_s``. A due time that turns out to be nothing (another worker took the entry)
costs one claim and is forgotten: hints at or before a claim's start are dropped after it.

Entries of a conversation that is being delivered are left out of a claim; they are claimed when that lane
ends, if anything was queued or claimed around it meanwhile (``after_lane``). A send queued for a
conversation whose lane is busy does not wake the worker at all (a claim now would leave it out): the lane's
end claims it, with whatever else queued up behind it meanwhile.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection
from datetime import datetime
from typing import Protocol

import anyio

from ..store.types import utcnow

MAX_HINTS = 1000
"""Known due times kept; past that the latest are dropped and the fallback look finds their entries."""


class Wake(Protocol):
    """``DeliveryWorker.wake``: work was queued, due now (no arguments) or at ``at``; ``lanes``: the
    (account_id, conversation_id) of what is due now, when known."""

    def __call__(
        self,
        at: datetime | None = None,
        *,
        scheduled: bool = False,
        lanes: Collection[tuple[str, str]] = (),
    ) -> None: ...


class Waking:
    def __init__(self) -> None:
        self.event = anyio.Event()
        self.new_work = False
        """Work was queued in this process since the last claim began: claim it."""
        self.after_lane = False
        """A lane was busy while work was queued or claimed around it: claim again when a lane ends."""
        self._due: list[datetime] = []
        self._scheduled: list[datetime] = []

    def wake(self, at: datetime | None = None, *, scheduled: bool = False, busy: bool = False) -> None:
        """Work was queued: due now (``at`` None or past), or at ``at`` (a scheduled send: ``scheduled``).
        ``busy``: a lane is being delivered (its conversation's new entries wait for its end)."""
        if at is not None and (scheduled or at > utcnow()):
            self.hint(at, scheduled=scheduled)
        else:
            self.new_work = True
            self.after_lane = self.after_lane or busy
        self.event.set()

    def hint(self, at: datetime, *, scheduled: bool = False) -> None:
        """Something is due at ``at``: a retry, a hold's end, a recovered send's grace; with ``scheduled``, a
        scheduled send (promotion looks then)."""
        _push(self._due, at)
        if scheduled:
            _push(self._scheduled, at)

    def due(self) -> datetime | None:
        """The earliest known due time (None: nothing known)."""
        return self._due[0] if self._due else None

    @property
    def scheduled_due(self) -> datetime | None:
        """When the earliest scheduled send known is due."""
        return self._scheduled[0] if self._scheduled else None

    def claimed(self, started: datetime) -> None:
        """A claim that began at ``started`` took every entry then due outside the busy lanes: the due times
        up to then are spent."""
        _pop_until(self._due, started)

    def promoted(self, started: datetime) -> None:
        """Promotion that began at ``started`` queued every scheduled send then due."""
        _pop_until(self._scheduled, started)

    async def wait(self, delay: float) -> bool:
        """Wait for a wake at most ``delay`` seconds; whether woken."""
        woken = False
        with anyio.move_on_after(delay):
            await self.event.wait()
            woken = True
        self.event = anyio.Event()
        return woken


def _push(heap: list[datetime], at: datetime) -> None:
    heapq.heappush(heap, at)
    if len(heap) > MAX_HINTS:
        heap[:] = heapq.nsmallest(MAX_HINTS // 2, heap)


def _pop_until(heap: list[datetime], until: datetime) -> None:
    while heap and heap[0] <= until:
        heapq.heappop(heap)
