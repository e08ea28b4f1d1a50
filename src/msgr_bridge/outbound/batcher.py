"""Group commit for outbound submissions: concurrent ``submit`` calls share one transaction.

One request per transaction caps the API at a few hundred sends per second (each commit is a round trip,
and every impersonated send appends to the hash-chained audit log under a lock). The first caller to find
no batch in progress becomes the leader: it yields once so concurrent callers can join, then commits what
has queued (up to ``max_batch``) and repeats until the queue is empty; every caller waits for its own
outcome. The leader's work is shielded from cancellation, so a client that hangs up cannot lose the
others' results. Each request gets its own outcome: one refused request never refuses its neighbours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel


@dataclass
class _Slot[Req, Res]:
    request: Req
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Res | None = None
    error: Exception | None = None


class SubmitBatcher[Req, Res]:
    def __init__(
        self,
        commit: Callable[[Sequence[Req]], Awaitable[list[Res | Exception]]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self._queue: list[_Slot[Req, Res]] = []
        self._leading = False
        self.batches = 0

    async def submit(self, request: Req) -> Res:
        slot: _Slot[Req, Res] = _Slot(request)
        self._queue.append(slot)
        if not self._leading:
            self._leading = True
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.lowlevel.checkpoint()  # let concurrent callers join this batch
                    await self._drain()
            finally:
                self._leading = False
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self.batches += 1
            try:
                outcomes = await self._commit([s.request for s in batch])
            except Exception as exc:  # the commit itself failed: every request in it gets the error
                outcomes = [exc] * len(batch)
            for slot, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    slot.error = outcome
                else:
                    slot.result = outcome
                slot.done.set()
