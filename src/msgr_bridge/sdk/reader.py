"""A connector's receive loop with backpressure: what a network library hands over is queued, boundedly,
and pushed to the sink one item after another.

Network libraries (bottom, slixmpp) call back for every line or stanza they read and cannot wait there, so
a connector used to put each one into an unbounded ``asyncio.Queue`` and push from it to the sink: a flood
while the inbound pipeline was slow grew memory without limit (issue #10 item 7). ``InboundReader``:

* ``feed(item)`` (from the library's callback, never blocks) queues the item; at ``high_water`` items it
  **pauses reading the socket** (``transport.pause_reading()``), so the kernel's receive buffer fills and
  TCP flow control stops the sender. What is queued is bounded by ``high_water`` plus what the library had
  already read from the socket in one go (one read buffer, e.g. 64 KiB of lines);
* ``run(handle)`` takes the items in order and awaits ``handle(item)`` (normally a ``sink.push``, which
  waits while the pipeline is behind); once the queue is down to ``low_water`` the socket is read again;
* ``lost(reason)`` (from the library's disconnect callback) ends ``run`` with ``TransientError(reason)``
  after the items queued before it, so the supervisor reconnects; ``forget_losses()`` drops such markers of
  a previous connection when a new one starts, keeping the items;
* ``stop()`` ends ``run`` cleanly (it returns) before its next item; what is still queued stays for the
  next ``run`` (a resumed XMPP stream counts it as delivered and will not send it again). ``reopen()``
  undoes ``stop()`` for the next connection.

``next(timeout)`` gives one item to a connector's own loop (IRC registration), ``None`` once the
connection is lost or the reader stopped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import TransientError

TransportOf = Callable[[], asyncio.BaseTransport | None]


@dataclass(frozen=True, slots=True)
class _Lost:
    reason: str


class InboundReader[T]:
    """Bounded, ordered hand-over from a network library's callbacks to a connector's receive loop."""

    def __init__(
        self, *, high_water: int = 1024, low_water: int | None = None, transport: TransportOf | None = None
    ) -> None:
        if high_water < 1:
            raise ValueError("high_water must be at least 1")
        self.high_water = high_water
        self.low_water = high_water // 2 if low_water is None else min(low_water, high_water)
        self._transport = transport
        self._items: deque[T | _Lost] = deque()
        self._ready = asyncio.Event()
        self._stopped = False
        self.paused = False
        """True while the socket is not read (the queue reached ``high_water``)."""
        self.most_queued = 0
        """The most items ever queued at once (for tests and metrics)."""
        self.pauses = 0

    # --- the library's side -------------------------------------------------------------------------

    def feed(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()
        queued = len(self._items)
        self.most_queued = max(self.most_queued, queued)
        if queued >= self.high_water and not self.paused:
            self._set_reading(False)

    def lost(self, reason: str) -> None:
        """The connection is gone: ``run`` raises ``TransientError(reason)`` after what is queued."""
        self._items.append(_Lost(reason))
        self._ready.set()

    # --- the connector's side -----------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return sum(1 for item in self._items if not isinstance(item, _Lost))

    def forget_losses(self) -> None:
        """A new connection starts: drop loss markers of the previous one, keep the items."""
        self._items = deque(item for item in self._items if not isinstance(item, _Lost))
        self.paused = False  # the new connection's transport has never been paused

    def stop(self) -> None:
        """End ``run`` (and ``next``) cleanly; queued items stay for the next ``run``."""
        self._stopped = True
        self._ready.set()

    def reopen(self) -> None:
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def next(self, timeout: float | None = None) -> T | None:
        """The next item; ``None`` when the connection is lost or the reader stopped. Raises
        ``TimeoutError`` when nothing arrives within ``timeout`` seconds."""
        item = await self._take(timeout)
        return None if item is None or isinstance(item, _Lost) else item

    async def run(
        self,
        handle: Callable[[T], Awaitable[None]],
        *,
        idle_s: float | None = None,
        on_idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``handle`` every item in order until ``stop()`` (returns) or a lost connection (raises
        ``TransientError``). After ``idle_s`` seconds without an item, ``on_idle()`` is awaited (a
        keepalive; it may raise ``TransientError`` itself)."""
        while True:
            try:
                item = await self._take(idle_s)
            except TimeoutError:
                if on_idle is not None:
                    await on_idle()
                continue
            if item is None:
                return
            if isinstance(item, _Lost):
                if self._stopped:
                    return
                raise TransientError(item.reason, hint="the supervisor reconnects")
            await handle(item)

    async def _take(self, timeout: float | None) -> T | _Lost | None:
        while not self._items or self._stopped:
            if self._stopped:
                return None
            self._ready.clear()
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        item = self._items.popleft()
        if self.paused and len(self._items) <= self.low_water:
            self._set_reading(True)
        return item

    def _set_reading(self, reading: bool) -> None:
        transport = self._transport() if self._transport is not None else None
        if not isinstance(transport, asyncio.ReadTransport) or transport.is_closing():
            self.paused = False
            return
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()
            self.pauses += 1
        self.paused = not reading
