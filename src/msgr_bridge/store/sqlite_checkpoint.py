"""Checkpoints of the SQLite writer's WAL on a thread of their own, off the commit path.

The writer connection (``sqlite_driver.ThreadWriter``) commits short transactions on the event loop's
thread with ``wal_autocheckpoint=0``: SQLite's own checkpoint would write the database file and fsync it
inside such a ``COMMIT``. Instead, every ``CHECKPOINT_EVERY`` commits a PASSIVE checkpoint (which never
waits for, nor blocks, a writer or reader) runs here, on one thread with a connection of its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

log = structlog.get_logger("msgr_bridge.store")

CHECKPOINT_EVERY = 64
"""Short commits between two checkpoints (a long transaction counts as a quarter of that): about SQLite's
own 1,000 pages, a lone message's commit writing ~15."""


class Checkpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._executor: ThreadPoolExecutor | None = None
        self._running: Future[None] | None = None
        self._conn: sqlite3.Connection | None = None
        self._since = 0
        self.checkpoints = 0
        """Checkpoints run (for tests and diagnostics)."""

    @property
    def running(self) -> Future[None] | None:
        return self._running

    def committed(self, weight: int) -> None:
        """A commit of the writer's (``weight``: about how many lone messages' pages it wrote)."""
        self._since += weight
        if self._since < CHECKPOINT_EVERY or not (self._running is None or self._running.done()):
            return
        self._since = 0
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._running = self._executor.submit(self._checkpoint)
        self._running.add_done_callback(_report)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = self._connect()
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.checkpoints += 1

    def close(self) -> None:
        """Wait for a checkpoint under way, then close (blocking: call it from a worker thread)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _report(done: Future[None]) -> None:
    exc = done.exception()
    if exc is not None:  # the next one tries again; the WAL is only longer meanwhile
        log.warning("sqlite.checkpoint_failed", error=str(exc))
