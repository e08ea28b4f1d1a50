"""SQLite through aiosqlite with one trip to its thread per statement.

aiosqlite runs every call on the connection's own thread, and each call is a round trip: queue the call,
wake the thread, run it, wake the event loop with the result. SQLAlchemy's asyncio adapter makes four such
trips for one statement (create a cursor, execute, fetch the rows, close the cursor) and one more when a
connection goes back to the pool (a rollback, even after a commit). At the rates people chat at, those
trips were most of the CPU a message cost (bench/everyday.py: ~0.3 ms each, 20 to 30 statements per send).

``connect`` returns an aiosqlite connection whose cursors execute, fetch and close in ONE trip, and whose
rollback skips the trip when no transaction is open. SQLAlchemy still drives it through its own
``aiosqlite`` dialect (``create_async_engine(..., async_creator=...)``): same SQL, same transactions.

Large results stay bounded: a cursor brings back at most ``CHUNK`` rows with the statement and fetches
the rest in further trips as they are read (``stream_scalars``, the audit chain check), closing the
SQLite cursor when it is exhausted.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite
import anyio
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .sqlite_checkpoint import CHECKPOINT_EVERY, Checkpointer

SQLITE_BUSY_TIMEOUT_MS = 30_000
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous=NORMAL",
)
"""Set on every connection: WAL (readers never wait for the writer), foreign keys, a busy timeout so
another process's writer (the CLI) is waited for, and no fsync per commit (WAL's checkpoints sync)."""

CHUNK = 1000
"""Rows brought back with the statement itself; more are fetched as they are read."""

SHRINK_TIMEOUT_S = 5.0
_Outcome = tuple[Any, int, int | None, list[Any], sqlite3.Cursor | None]


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: execute, fetch the first rows, close the cursor when it is done."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchmany(CHUNK) if description else []
    except BaseException:
        cursor.close()
        raise
    if len(rows) < CHUNK:
        outcome: _Outcome = (description, cursor.rowcount, cursor.lastrowid, rows, None)
        cursor.close()
        return outcome
    return description, cursor.rowcount, cursor.lastrowid, rows, cursor


def _more(cursor: sqlite3.Cursor) -> tuple[list[Any], bool]:
    rows = cursor.fetchmany(CHUNK)
    done = len(rows) < CHUNK
    if done:
        cursor.close()
    return rows, done


class OneTripCursor:
    """The part of aiosqlite's ``Cursor`` that SQLAlchemy's adapter uses, one trip per statement."""

    def __init__(self, conn: OneTripConnection) -> None:
        self._conn = conn
        self._rows: deque[Any] = deque()
        self._open: sqlite3.Cursor | None = None
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> OneTripCursor:
        await self._start(sql, parameters, many=False)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneTripCursor:
        await self._start(sql, parameters, many=True)
        return self

    async def _start(self, sql: str, parameters: Any, *, many: bool) -> None:
        await self.close()
        outcome = await self._conn.run(partial(_run, self._conn.sqlite, sql, parameters, many))
        self.description, self.rowcount, self.lastrowid, rows, self._open = outcome
        self._rows = deque(rows)

    async def _fill(self, wanted: int | None) -> None:
        while self._open is not None and (wanted is None or len(self._rows) < wanted):
            rows, done = await self._conn.run(partial(_more, self._open))
            self._rows.extend(rows)
            if done:
                self._open = None

    async def fetchall(self) -> list[Any]:
        await self._fill(None)
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        await self._fill(size)
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    async def fetchone(self) -> Any:
        await self._fill(1)
        return self._rows.popleft() if self._rows else None

    async def close(self) -> None:
        self._rows.clear()
        cursor, self._open = self._open, None
        if cursor is not None:
            await self._conn.run(cursor.close)


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection with one-trip cursors and a rollback that skips the trip when idle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        """Held while a thread other than the connection's own may use it (``ThreadWriter``)."""

    @property
    def sqlite(self) -> sqlite3.Connection:
        return self._conn

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the connection's thread (one trip)."""
        return await self._execute(fn)  # type: ignore[no-untyped-call]

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def rollback(self) -> None:
        # The pool rolls back every connection it takes back, after a commit too: nothing to do then.
        # (``in_transaction`` reads SQLite's autocommit flag; no statement runs on a checked-in connection.)
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()


_open: weakref.WeakSet[OneTripConnection] = weakref.WeakSet()
"""Every connection ``connect`` made that is not garbage yet (``release_memory``)."""


async def connect(args: Sequence[Any], kwargs: dict[str, Any]) -> OneTripConnection:
    """A connection with ``sqlite3.connect(*args, **kwargs)`` (what SQLAlchemy's dialect would pass)."""
    conn = OneTripConnection(partial(sqlite3.connect, *args, **kwargs), iter_chunk_size=64)
    conn._thread.daemon = True  # as SQLAlchemy's dialect does: a stuck query never blocks the exit
    await conn  # starts the thread and opens the database
    _open.add(conn)
    return conn


def _transaction[T](conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT`` (rolled back on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _waiting[T](owner: OneTripConnection, transaction: Callable[[], T]) -> T:
    """On the writer's thread: a transaction that waits out another process's writer (busy handler)."""
    conn = owner.sqlite
    with owner.lock:
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        try:
            return transaction()
        finally:
            conn.execute("PRAGMA busy_timeout=0")


def _busy(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


class ThreadWriter:
    """A connection of its own for short write transactions that run whole, without SQLAlchemy: one call
    for ``BEGIN IMMEDIATE``, every statement and ``COMMIT``, where a session makes one trip to its thread
    per statement and pays SQLAlchemy's execution machinery for each.

    A ``short`` transaction (a lone message's few statements) runs right here on the caller's (the event
    loop's) thread: the trip to the connection's thread and back (two thread wake-ups, the GIL handed over
    twice) cost more than the transaction itself (bench/everyday.py ``in_100``). Such a transaction never
    waits on the loop: its busy timeout is 0, and when another process holds the write lock (or
    ``release_memory`` has the connection) it goes to the thread, where the busy handler waits as before.
    Nor does its ``COMMIT`` write the database file and fsync: this connection does not checkpoint
    (``wal_autocheckpoint=0``); every ``CHECKPOINT_EVERY`` commits a PASSIVE checkpoint (which never
    blocks a writer) runs on a thread with a connection of its own. Longer transactions go to the thread.

    ``run(fn)`` hands ``fn`` the ``sqlite3`` connection (statements compiled once, ``store.compiled``);
    ``run_core(body)`` hands ``body`` a synchronous SQLAlchemy ``Connection`` over the same connection, so
    Core statements (expanding ``IN`` lists, ``RETURNING``, type conversion) run there as written, at about
    a tenth of what the same statements cost through an ``AsyncSession`` (measured: 3 statements in 0.17 ms
    of CPU against 1.2 ms).

    The caller serializes writers (``Database``'s write lock); other processes queue in SQLite's busy
    handler, as for pooled connections. Opened on first use with the pool's own arguments and pragmas."""

    def __init__(self, args: Sequence[Any], kwargs: dict[str, Any], *, json_serializer: Any = None) -> None:
        self._args, self._kwargs = args, kwargs
        self._json_serializer = json_serializer
        self._conn: OneTripConnection | None = None
        self._core: Connection | None = None
        """The SQLAlchemy connection over ``_conn``'s ``sqlite3`` connection (used by one thread at a
        time: the write lock, and ``OneTripConnection.lock`` against ``release_memory``)."""
        self.checkpointer = Checkpointer(lambda: _configure(sqlite3.connect(*args, **kwargs)))

    async def _open(self) -> OneTripConnection:
        if self._conn is None:
            conn = await connect(self._args, self._kwargs)
            await conn.run(partial(_configure_writer, conn.sqlite))
            self._conn = conn
        return self._conn

    async def run[T](self, fn: Callable[[sqlite3.Connection], T], *, short: bool = False) -> T:
        conn = await self._open()
        return await self._run(conn, partial(_transaction, conn.sqlite, fn), short, CHECKPOINT_EVERY // 4)

    async def run_core[T](self, body: Callable[[Connection], T], *, short: bool = False) -> T:
        """``body`` with the SQLAlchemy connection, as ``run``: a ``short`` one on the caller's thread
        unless that would wait."""
        conn = await self._open()
        transaction = partial(self._core_transaction, conn.sqlite, body)
        return await self._run(conn, transaction, short, 1 if short else CHECKPOINT_EVERY // 4)

    async def _run[T](
        self, conn: OneTripConnection, transaction: Callable[[], T], short: bool, thread_weight: int
    ) -> T:
        """``transaction`` (it begins with ``BEGIN IMMEDIATE``): when ``short``, right here unless the
        connection is in use or another process writes (then nothing was done: it was rolled back);
        otherwise, or then, on the connection's thread, waiting in SQLite's busy handler. Each commit
        counts towards the next checkpoint, one on the thread by ``thread_weight``."""
        result: T
        if short and conn.lock.acquire(blocking=False):
            try:
                result = transaction()
            except sqlite3.Error as exc:  # raised by BEGIN IMMEDIATE itself: nothing ran
                if not _busy(exc) or conn.sqlite.in_transaction:
                    raise
            else:
                self.checkpointer.committed(1)
                return result
            finally:
                conn.lock.release()
        result = await conn.run(partial(_waiting, conn, transaction))
        self.checkpointer.committed(thread_weight)
        return result

    def _core_transaction[T](self, raw: sqlite3.Connection, body: Callable[[Connection], T]) -> T:
        """``body`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT``: BEGIN emitted on the driver's connection
        (SQLAlchemy's own for pysqlite is none), then SQLAlchemy commits through the driver, or rolls back
        when ``body`` raises."""
        if self._core is None:
            self._core = _core_connection(raw, self._json_serializer)
        raw.execute("BEGIN IMMEDIATE")
        try:
            with self._core.begin():
                return body(self._core)
        finally:
            if raw.in_transaction:  # the begin block ends it; a failure to commit or roll back must not
                raw.execute("ROLLBACK")  # leave the writer inside a transaction

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.checkpointer.close)
        conn, self._conn = self._conn, None
        core, self._core = self._core, None
        if conn is not None:
            if core is not None:
                await conn.run(core.close)
            await conn.close()


def _core_connection(raw: sqlite3.Connection, json_serializer: Any) -> Connection:
    """A synchronous SQLAlchemy connection over ``raw`` (the pysqlite dialect: same SQL, same type
    conversions as the pool's aiosqlite dialect). Nothing is reset when it is returned: the writer owns the
    connection and ends each transaction itself."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    kwargs: dict[str, Any] = {"json_serializer": json_serializer} if json_serializer else {}
    engine = create_engine(
        "sqlite://", creator=lambda: raw, poolclass=StaticPool, pool_reset_on_return=None, **kwargs
    )
    return engine.connect()


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.isolation_level = None  # we emit BEGIN ourselves
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def _configure_writer(conn: sqlite3.Connection) -> None:
    _configure(conn)
    conn.execute("PRAGMA busy_timeout=0")  # a short transaction never waits on the loop (ThreadWriter)
    conn.execute("PRAGMA wal_autocheckpoint=0")  # nor checkpoints there: the checkpoint thread does


async def reap_closers(grace_s: float = 1.0) -> None:
    """End aiosqlite "graceful close" tasks that SQLAlchemy left behind.

    When a cancel scope interrupts a query on an aiosqlite connection, SQLAlchemy invalidates it and closes
    it gracefully in a shielded task; anyio then cancels the waiter again, SQLAlchemy force-stops the
    connection's thread, and the graceful-close task can be left awaiting a future that thread will never
    resolve. Such a task blocks the event loop's shutdown forever. Give them ``grace_s`` to finish, then
    cancel what is left as often as it takes (each cancel interrupts one await; aiosqlite awaits again in
    its ``finally``): the connection is closed already, only the task is left.
    """
    import asyncio

    current = asyncio.current_task()
    closers = [
        t
        for t in asyncio.all_tasks()
        if t is not current
        and getattr(t.get_coro(), "__qualname__", "").endswith("_terminate_graceful_close")
    ]
    if not closers:
        return
    _, pending = await asyncio.wait(closers, timeout=grace_s)
    for task in pending:
        for _ in range(10):
            if task.done():
                break
            task.cancel()
            await asyncio.sleep(0)


def install_hooks(engine: AsyncEngine) -> None:
    """Every pooled connection: the pragmas, and ``BEGIN IMMEDIATE`` for writers (``BEGIN`` for reads)."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from sqlite3 (it skips BEGIN for SELECT and DDL); we emit BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("msgr_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _shrink(owner: OneTripConnection) -> None:
    with owner.lock:  # the writer's connection may be in use on the event loop's thread (ThreadWriter)
        owner.sqlite.execute("PRAGMA shrink_memory").close()


async def release_memory() -> int:
    """Have every open connection give back its page cache (``PRAGMA shrink_memory``, on its own thread,
    in turn with its statements: an open transaction keeps the pages it uses). After a burst each cache
    holds up to its ``cache_size`` (2 MB) until the next statement; idle, that is memory nobody uses.
    Returns how many connections did."""
    done = 0
    for conn in list(_open):
        # Bounded: a connection closed after this call was queued would never answer it.
        with anyio.move_on_after(SHRINK_TIMEOUT_S):
            try:
                await conn.run(partial(_shrink, conn))
            except (ValueError, sqlite3.Error):  # closed meanwhile
                continue
            done += 1
    return done
