"""A network cursor (a sync token, an update offset) stored only once what was pushed before it is committed.

A connector that reads in batches (one ``/sync`` answer, one page of updates) pushes each batch's payloads
with an ``ack`` the inbound pipeline calls after their commit, then closes the batch with its cursor::

    cursor = CommittedCursor(lambda token: ctx.state.set("next_batch", token))
    for payload in batch:
        await ctx.sink.push(payload, ack=cursor.ack())
    await cursor.close(batch_token)   # stored once this batch and every earlier one are committed

A crash between push and commit therefore leaves the older cursor stored, and the restart fetches those
payloads again (the store keeps each once). A new session starts a new ``CommittedCursor`` and ``retire()``s
the old one, whose late acks then store nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..connectors.protocol import Ack


@dataclass(slots=True)
class _Batch:
    token: str | None = None
    """The batch's cursor; None while its payloads are still being pushed."""
    owed: int = 0
    """Acks not yet received."""


class CommittedCursor:
    def __init__(self, save: Callable[[str], Awaitable[None]]) -> None:
        self._save = save
        self._closed: deque[_Batch] = deque()
        self._open = _Batch()
        self._lock = asyncio.Lock()
        self.retired = False
        self.saved: str | None = None
        """The last cursor stored (for tests and logs)."""

    def ack(self) -> Ack:
        """An ack for one payload of the batch being pushed."""
        batch = self._open
        batch.owed += 1

        async def committed() -> None:
            batch.owed -= 1
            await self._flush()

        return committed

    async def close(self, token: str) -> None:
        """Every payload of the batch whose cursor is ``token`` has been pushed."""
        self._open.token = token
        self._closed.append(self._open)
        self._open = _Batch()
        await self._flush()

    def retire(self) -> None:
        self.retired = True
        self._closed.clear()

    @property
    def owed(self) -> int:
        """Payloads pushed and not yet committed."""
        return self._open.owed + sum(b.owed for b in self._closed)

    async def _flush(self) -> None:
        async with self._lock:  # saves happen in batch order even when acks and close interleave
            latest = None
            while self._closed and self._closed[0].owed <= 0:
                latest = self._closed.popleft().token
            if latest is not None and not self.retired:
                await self._save(latest)
                self.saved = latest
