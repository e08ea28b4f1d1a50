"""Group commit: delivery results and on-the-wire markers of many conversations, committed together as soon
as any conversation needs one.

Each conversation's delivery task asks ``commit(results=..., on_wire=...)`` and waits until what it handed
in is durable: a wire marker before the network write, a result right after it. Whoever finds no commit in
progress commits everything handed in so far in one transaction; the others wait for that one (or the next).
So a slow send holds back only its own conversation, and under load many conversations share a commit.

A database outage does not lose anything: the commit is retried (``OutageGuard``) until the database answers,
and the waiting conversations wait with it. Each try is shielded from cancellation (a statement is never torn
down halfway); the sleeps between tries are not, so shutdown during an outage is not held up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from ..store.outage import OutageGuard
from .delivery_types import Result

Flush = Callable[[list[Result], list[str]], Awaitable[None]]

STATEMENT_TIMEOUT_S = 30.0
"""A commit that takes longer counts as an outage (and is tried again)."""


class _Ticket:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self, flush: Flush, guard: OutageGuard) -> None:
        self._flush = flush
        self._guard = guard
        self._results: list[Result] = []
        self._on_wire: list[str] = []
        self._next = _Ticket()
        self._lock = anyio.Lock()

    async def commit(self, results: Sequence[Result] = (), on_wire: Sequence[str] = ()) -> None:
        """Make ``results`` and the ``on_wire`` markers durable (with whatever else is waiting)."""
        self._results.extend(results)
        self._on_wire.extend(on_wire)
        ticket = self._next
        async with self._lock:
            if not ticket.done.is_set():
                await self._commit_pending()
        if ticket.error is not None:
            raise ticket.error

    async def _commit_pending(self) -> None:
        results, on_wire, ticket = self._results, self._on_wire, self._next
        self._results, self._on_wire, self._next = [], [], _Ticket()

        async def attempt() -> None:
            with anyio.CancelScope(shield=True), anyio.fail_after(STATEMENT_TIMEOUT_S):
                await self._flush(results, on_wire)

        try:
            await self._guard.retry(attempt, "commit delivery results")
        except Exception as exc:
            ticket.error = exc
            ticket.done.set()
            raise
        except BaseException:
            # Cancelled between tries: the work goes back, and whoever waits for it commits it (a waiter
            # returns only once its own items were committed, by itself or by another).
            self._results[:0], self._on_wire[:0] = results, on_wire
            raise
        ticket.done.set()
