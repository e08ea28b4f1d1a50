"""Telethon's updates on their way to the sink, and the update state they move.

From ``connect()`` on, Telethon hands every update to ``Inbox.on_update``. Until ``subscribe()`` calls
``open()`` they are kept (bounded by ``buffer_max``), because the core first runs the catch-up through
``sync_state`` and commits it: an update the catch-up already returned (its ``pts`` within the difference)
is then only counted, not pushed twice. Each pushed payload carries an ack that commits its ``pts`` in the
ledger; updates with nothing to push, and the answers to our own requests, are committed as they come
(our own only when they follow what was seen, so a gap is never skipped). The items of an album are held
until the album is complete (``album.py``) and pushed as one payload whose ack commits all their ``pts``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from telethon.tl import types

from msgr_bridge.connectors.protocol import InboundSink

from .album import WAIT_S, Albums, key_of
from .state import COMMON, UpdateLedger, UpdateState
from .updates import Mark, UpdateRouter, mark_of, own_marks

Item = tuple[list[dict[str, Any]], list[Mark]]
"""Payloads to push and the update-state marks their commit moves."""


class Inbox:
    def __init__(self, sink: InboundSink, ledger: UpdateLedger, router: UpdateRouter, limit: int, log: Any):
        self.sink, self.ledger, self.router, self.limit, self.log = sink, ledger, router, limit, log
        self.buffer: deque[Item] = deque()
        self.live = False
        self.closed = False
        self.overflow = False
        self.caught_up: UpdateState | None = None
        """The state the catch-up reached, when it fetched a difference (None: nothing fetched)."""
        self.files: Callable[[Any, dict[str, Any]], Awaitable[None]] | None = None
        """Stores a new message's file and names it in its payload (``MediaStore.keep``)."""
        self.albums: Albums | None = None
        self.held: list[tuple[Any, dict[str, Any], Mark | None]] = []
        """Items of an album waiting for the rest of it (``album.WAIT_S``)."""
        self.lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.buffer.clear()
        self.held.clear()
        self.live = self.closed = self.overflow = False
        self.caught_up = None
        self.ledger.reset()

    async def on_update(self, update: Any) -> None:
        if self.closed:
            return
        try:
            payloads, mark = self.router.payloads(update, getattr(update, "_entities", None)), mark_of(update)
        except Exception as exc:  # an update we cannot read must not stop the others
            self.log.warning("telegram.update_unreadable", update=type(update).__name__, error=repr(exc))
            return
        new = isinstance(update, types.UpdateNewMessage | types.UpdateNewChannelMessage) and payloads
        album = key_of(payloads[0]) if new else None
        async with self.lock:
            if self.held and album != key_of(self.held[0][1]):
                await self._release()
            if album is not None:
                self.held.append((update.message, payloads[0], mark))
                self._arm()
                return
            if new and self.files is not None:
                await self.files(update.message, payloads[0])
            await self._accept(payloads, [mark] if mark is not None else [])

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(WAIT_S, self._release_later)

    def _release_later(self) -> None:
        async def release() -> None:
            async with self.lock:
                if self.held and not self.closed:
                    await self._release()

        task = asyncio.get_running_loop().create_task(release())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self) -> None:
        """Push the held album items as one message (their files stored first)."""
        held, self.held = self.held, []
        if self._timer is not None:
            self._timer.cancel()
        for message, payload, _ in held:
            if self.files is not None:
                await self.files(message, payload)
        payloads = [p for _, p, _ in held]
        merged = await self.albums.merge(payloads) if self.albums is not None else payloads
        await self._accept(merged, [m for _, _, m in held if m is not None])

    async def _accept(self, payloads: list[dict[str, Any]], marks: list[Mark]) -> None:
        if self.live:
            await self._deliver(payloads, marks)
        elif len(self.buffer) < self.limit:
            self.buffer.append((payloads, marks))
        else:
            self.overflow = True

    async def open(self) -> None:
        """Push what was kept (minus what the catch-up returned), then everything as it comes."""
        async with self.lock:
            self.live = True
            while self.buffer and not self.closed:
                payloads, marks = self.buffer.popleft()
                await self._deliver([] if self._covered(marks) else payloads, marks)

    async def own(self, result: Any, box: int = COMMON) -> None:
        for mark in own_marks(result, box):
            if self.ledger.follows(mark.box, mark.pts, mark.count):
                await self.ledger.done(mark.box, mark.pts, mark.date)

    async def _deliver(self, payloads: list[dict[str, Any]], marks: list[Mark]) -> None:
        if not payloads:
            for mark in marks:
                await self.ledger.done(mark.box, mark.pts, mark.date)
            return
        acks = [self.ledger.track(m.box, m.pts, m.date) for m in marks]

        async def ack() -> None:
            for one in acks:
                await one()

        for index, item in enumerate(payloads):
            await self.sink.push(item, ack=ack if acks and index == len(payloads) - 1 else None)

    def _covered(self, marks: list[Mark]) -> bool:
        caught = self.caught_up
        if not marks or caught is None:
            return False
        return all(m.pts <= (caught.pts if m.box == COMMON else caught.channels.get(m.box, 0)) for m in marks)
