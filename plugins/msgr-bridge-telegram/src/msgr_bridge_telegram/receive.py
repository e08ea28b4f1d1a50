"""Telethon's updates on their way to the sink, and the update state they move.

From ``connect()`` on, Telethon hands every update to ``Inbox.on_update``. Until ``subscribe()`` calls
``open()`` they are kept (bounded by ``buffer_max``), because the core first runs the catch-up through
``sync_state`` and commits it: an update the catch-up already returned (its ``pts`` within the difference)
is then only counted, not pushed twice. Each pushed payload carries an ack that commits its ``pts`` in the
ledger; updates with nothing to push, and the answers to our own requests, are committed as they come
(our own only when they follow what was seen, so a gap is never skipped).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from telethon.tl import types

from msgr_bridge.connectors.protocol import InboundSink

from .state import COMMON, UpdateLedger, UpdateState
from .updates import Mark, UpdateRouter, mark_of, own_marks


class Inbox:
    def __init__(self, sink: InboundSink, ledger: UpdateLedger, router: UpdateRouter, limit: int, log: Any):
        self.sink, self.ledger, self.router, self.limit, self.log = sink, ledger, router, limit, log
        self.buffer: deque[tuple[list[dict[str, Any]], Mark | None]] = deque()
        self.live = False
        self.closed = False
        self.overflow = False
        self.caught_up: UpdateState | None = None
        """The state the catch-up reached, when it fetched a difference (None: nothing fetched)."""
        self.files: Callable[[Any, dict[str, Any]], Awaitable[None]] | None = None
        """Stores a new message's file and names it in its payload (``MediaStore.keep``)."""

    def reset(self) -> None:
        self.buffer.clear()
        self.live = self.closed = self.overflow = False
        self.caught_up = None
        self.ledger.reset()

    async def on_update(self, update: Any) -> None:
        if self.closed:
            return
        try:
            item = (self.router.payloads(update, getattr(update, "_entities", None)), mark_of(update))
        except Exception as exc:  # an update we cannot read must not stop the others
            self.log.warning("telegram.update_unreadable", update=type(update).__name__, error=repr(exc))
            return
        new = isinstance(update, types.UpdateNewMessage | types.UpdateNewChannelMessage)
        if new and self.files is not None and item[0]:
            await self.files(update.message, item[0][0])
        if self.live:
            await self._deliver(*item)
        elif len(self.buffer) < self.limit:
            self.buffer.append(item)
        else:
            self.overflow = True

    async def open(self) -> None:
        """Push what was kept (minus what the catch-up returned), then everything as it comes."""
        self.live = True
        while self.buffer and not self.closed:
            payloads, mark = self.buffer.popleft()
            await self._deliver([] if self._covered(mark) else payloads, mark)

    async def own(self, result: Any, box: int = COMMON) -> None:
        for mark in own_marks(result, box):
            if self.ledger.follows(mark.box, mark.pts, mark.count):
                await self.ledger.done(mark.box, mark.pts, mark.date)

    async def _deliver(self, payloads: list[dict[str, Any]], mark: Mark | None) -> None:
        if not payloads:
            if mark is not None:
                await self.ledger.done(mark.box, mark.pts, mark.date)
            return
        ack = self.ledger.track(mark.box, mark.pts, mark.date) if mark is not None else None
        for index, item in enumerate(payloads):
            await self.sink.push(item, ack=ack if index == len(payloads) - 1 else None)

    def _covered(self, mark: Mark | None) -> bool:
        caught = self.caught_up
        if mark is None or caught is None:
            return False
        reached = caught.pts if mark.box == COMMON else caught.channels.get(mark.box, 0)
        return mark.pts <= reached
