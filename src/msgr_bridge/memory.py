"""Giving memory back once a burst is over (issue 19: RSS after a 5,000-message burst stayed ~25 MB above
idle for good).

What a burst leaves behind, measured with bench/everyday.py (SQLite): each SQLite connection's page cache
full (2 to 5 MB each, on its own thread's malloc arena), freed blocks that glibc keeps in its arenas, and
cyclic garbage. ``QuietTrim`` looks every ``WINDOW_S`` seconds while the database is in use (after a
window in which no transaction began it waits for the next one: an idle bridge has no timer here), and
when a window was quiet (at most ``QUIET_MAX`` transactions: steady chat at a few messages a second
counts as quiet) and the resident set grew ``GROWTH_BYTES`` or more since the last trim, it trims once:
each SQLite connection shrinks its cache (``PRAGMA shrink_memory``), the garbage collector runs, and
glibc's ``malloc_trim(0)`` hands free pages back to the kernel (glibc only; elsewhere that step is
skipped). A trim costs a few tens of ms of CPU, once per burst; a look costs one read of
``/proc/self/statm``. Without ``/proc`` a trim follows every ``BURST_MIN`` transactions instead.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskStatus
from sqlalchemy import event

from .store.db import Database

log = structlog.get_logger("msgr_bridge.memory")

WINDOW_S = 10.0
QUIET_MAX = 50
"""At most this many transactions in a window: the burst is over."""
GROWTH_BYTES = 8 << 20
"""Resident growth since the last trim (or the start) that makes a quiet window worth a trim."""
BURST_MIN = 500
"""Without ``/proc``: transactions since the last trim that make a quiet window worth a trim."""


def freeze_start_up() -> None:
    """Put what start-up made (modules, classes, the ORM's mappings: ~120,000 objects) out of the garbage
    collector's reach, so that a full collection scans only what came later: measured 8 ms -> ~0 ms for
    the start-up heap, a stall that otherwise lands on whichever message is being handled (issue 19: p99
    latency). ``msgr-bridge run`` calls it once, started; tests that start bridges in their own process
    do not (it would keep their garbage for good)."""
    gc.collect()
    gc.freeze()


def resident_bytes() -> int | None:
    """This process's resident set (Linux), or None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _glibc_malloc_trim() -> Callable[[], Any] | None:
    """``malloc_trim(0)`` of the C library, when it is glibc's (musl and macOS have none)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        import ctypes  # here: a bridge that never has a burst never loads it

        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):
        return None
    trim: Callable[[int], int] = libc.malloc_trim
    return lambda: trim(0)


class QuietTrim:
    def __init__(self, db: Database, *, window_s: float = WINDOW_S, growth_bytes: int = GROWTH_BYTES) -> None:
        self.db, self.window_s, self.growth_bytes = db, window_s, growth_bytes
        self.transactions = 0
        """Transactions begun since the start (a SQLAlchemy ``begin`` listener and the database's writer
        thread listener: one addition each)."""
        self.trims = 0
        self._baseline: int | None = None
        self._trimmed_at = 0
        self._busy: anyio.Event | None = None
        self._malloc_trim: Callable[[], Any] | bool | None = False
        """False: not looked up yet; None: not glibc."""

    def _begun(self, *_: Any) -> None:
        self.transactions += 1
        if (busy := self._busy) is not None:
            self._busy = None
            busy.set()

    def attach(self) -> None:
        """Count the database's transactions. Call it before anything else uses the engine: adding a
        listener while another task is inside a ``begin`` dispatch breaks that dispatch (and it is never
        removed for the same reason; the engine goes away with the database)."""
        event.listen(self.db.engine.sync_engine, "begin", self._begun)
        self.db.writer_thread_listeners.append(self._begun)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._baseline = resident_bytes()
        task_status.started()
        seen = self.transactions
        while True:
            if self.transactions == seen:  # nothing since the last look: no timer until something happens
                busy = self._busy = anyio.Event()
                await busy.wait()
            seen = self.transactions
            await anyio.sleep(self.window_s)
            if self.transactions - seen <= QUIET_MAX and self._grown():
                await self.trim()

    def _grown(self) -> bool:
        now = resident_bytes()
        if now is None or self._baseline is None:
            return self.transactions - self._trimmed_at >= BURST_MIN
        self._baseline = min(self._baseline, now)
        return now - self._baseline >= self.growth_bytes

    async def trim(self) -> None:
        """Give back what the last burst left: SQLite caches, cyclic garbage, glibc's free pages."""
        before = resident_bytes()
        self._trimmed_at = self.transactions
        self.trims += 1
        if self.db.is_sqlite:
            from .store.sqlite_driver import release_memory

            await release_memory()
        gc.collect()
        if self._malloc_trim is False:
            self._malloc_trim = _glibc_malloc_trim()
        if callable(self._malloc_trim):
            await anyio.to_thread.run_sync(self._malloc_trim)
        self._baseline = after = resident_bytes()
        log.debug("memory.trimmed", before=before, after=after, transactions=self.transactions)
