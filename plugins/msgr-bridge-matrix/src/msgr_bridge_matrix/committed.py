"""The sync token is stored only once everything pushed before it is committed.

Each ``/sync`` answer's payloads are pushed with an ``ack`` the inbound pipeline calls after their commit.
``CommittedToken`` counts the acks still owed per answer and stores an answer's ``next_batch`` once its own
payloads and those of every earlier answer are committed. A crash between push and commit therefore
leaves the older token stored, and the restart fetches those events again (the store keeps each once).

A new session (``connect``, then ``subscribe``) starts a new tracker and retires the old one, whose late
acks then store nothing: the new session's ``sync_state`` already resumed from the stored token.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from msgr_bridge.connectors.protocol import Ack


@dataclass(slots=True)
class _Answer:
    token: str | None = None
    """``next_batch`` of the answer; None while its payloads are still being pushed."""
    owed: int = 0
    """Acks not yet received."""


class CommittedToken:
    def __init__(self, save: Callable[[str], Awaitable[None]]) -> None:
        self._save = save
        self._closed: deque[_Answer] = deque()
        self._open = _Answer()
        self._lock = asyncio.Lock()
        self.retired = False
        self.saved: str | None = None
        """The last token stored (for tests and logs)."""

    def ack(self) -> Ack:
        """An ack for one payload of the answer being pushed."""
        answer = self._open
        answer.owed += 1

        async def committed() -> None:
            answer.owed -= 1
            await self._flush()

        return committed

    async def close(self, token: str) -> None:
        """Every payload of the answer whose ``next_batch`` is ``token`` has been pushed."""
        self._open.token = token
        self._closed.append(self._open)
        self._open = _Answer()
        await self._flush()

    def retire(self) -> None:
        self.retired = True
        self._closed.clear()

    @property
    def owed(self) -> int:
        """Payloads pushed and not yet committed."""
        return self._open.owed + sum(a.owed for a in self._closed)

    async def _flush(self) -> None:
        async with self._lock:  # saves happen in answer order even when acks and close interleave
            latest = None
            while self._closed and self._closed[0].owed <= 0:
                latest = self._closed.popleft().token
            if latest is not None and not self.retired:
                await self._save(latest)
                self.saved = latest
