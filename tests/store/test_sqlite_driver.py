"""SQLite with one trip to aiosqlite's thread per statement (``store.sqlite_driver``), under SQLAlchemy."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from msgr_bridge.store import sqlite_driver
from msgr_bridge.store.db import Database
from msgr_bridge.store.sqlite_checkpoint import CHECKPOINT_EVERY
from msgr_bridge.store.sqlite_driver import CHUNK, OneTripConnection


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(f"sqlite:///{tmp_path}/bridge.db") as db:
        async with db.session() as s:
            await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
        yield db


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    run = OneTripConnection.run

    async def counted(self: OneTripConnection, fn: object) -> object:
        seen.append(getattr(getattr(fn, "func", fn), "__name__", "?"))
        return await run(self, fn)  # type: ignore[arg-type]

    monkeypatch.setattr(OneTripConnection, "run", counted)
    return seen


async def test_a_statement_is_one_trip_and_a_finished_transaction_is_not_rolled_back_again(
    sqlite_db: Database, trips: list[str]
) -> None:
    async with sqlite_db.session() as s:
        await s.execute(text("INSERT INTO t (v) VALUES ('a')"))
        rows = (await s.execute(text("SELECT id, v FROM t"))).all()
    assert [tuple(r) for r in rows] == [(1, "a")]
    # BEGIN IMMEDIATE, INSERT, SELECT: one trip each (commit goes through aiosqlite, the pool's
    # rollback after it is skipped); SQLAlchemy's adapter took four trips per statement.
    assert trips == ["_run", "_run", "_run"]


async def test_a_failed_transaction_is_rolled_back(sqlite_db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with sqlite_db.session() as s:
            await s.execute(text("INSERT INTO t (id, v) VALUES (1, 'kept?')"))
            await s.execute(text("INSERT INTO t (id, v) VALUES (1, 'twice')"))
    async with sqlite_db.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    async with sqlite_db.session() as s:  # the connection is usable again
        await s.execute(text("INSERT INTO t (v) VALUES ('after')"))
    async with sqlite_db.read() as s:
        assert (await s.execute(text("SELECT v FROM t"))).scalars().all() == ["after"]


async def test_updates_report_their_rowcount_and_inserts_their_rowid(sqlite_db: Database) -> None:
    async with sqlite_db.session() as s:
        inserted = await s.execute(text("INSERT INTO t (v) VALUES ('x')"))
        assert inserted.lastrowid == 1  # type: ignore[attr-defined]
        await s.execute(text("INSERT INTO t (v) VALUES ('y')"))
        updated = await s.execute(text("UPDATE t SET v = 'z'"))
        assert updated.rowcount == 2  # type: ignore[attr-defined]
        returned = (await s.execute(text("UPDATE t SET v = 'w' WHERE id = 2 RETURNING id"))).all()
        assert [r[0] for r in returned] == [2]


async def test_a_large_result_is_streamed_in_bounded_chunks(sqlite_db: Database, trips: list[str]) -> None:
    n = CHUNK * 2 + 5
    async with sqlite_db.session() as s:
        await s.execute(
            text(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :n) "
                "INSERT INTO t (id, v) SELECT i, 'row' FROM c"
            ),
            {"n": n},
        )
    trips.clear()
    async with sqlite_db.read() as s:
        stream = await s.stream_scalars(text("SELECT id FROM t ORDER BY id"))
        first = [await stream.__anext__() for _ in range(3)]
        assert first == [1, 2, 3]
        assert trips.count("_more") == 0  # only the first chunk was brought back so far
        rest = [i async for i in stream]
    assert first + rest == list(range(1, n + 1))
    assert trips.count("_more") == 2  # the other two chunks, as they were read
    async with sqlite_db.read() as s:
        assert len((await s.execute(text("SELECT id FROM t"))).all()) == n  # fetchall: every chunk


def test_the_bridge_opens_sqlite_through_it() -> None:
    assert Database("sqlite:///x.db")._sqlite_creator().func is sqlite_driver.connect


def _insert(value: str) -> Callable[[sqlite3.Connection], int]:
    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return threading.get_ident()

    return work


async def _values(db: Database) -> list[str]:
    async with db.read() as s:
        return list((await s.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all())


async def test_a_short_transaction_runs_on_the_callers_thread_a_long_one_on_the_writers(
    sqlite_db: Database, trips: list[str]
) -> None:
    await sqlite_db.on_writer_thread(_insert("opens the writer"))
    trips.clear()
    assert await sqlite_db.on_writer_thread(_insert("short"), short=True) == threading.get_ident()
    assert trips == []  # no trip to the writer's thread
    assert await sqlite_db.on_writer_thread(_insert("long")) != threading.get_ident()
    assert trips == ["_waiting"]
    assert await _values(sqlite_db) == ["opens the writer", "short", "long"]


async def test_a_short_transaction_never_waits_on_the_loop_for_another_processes_writer(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Another connection (the CLI, another process) holds the write lock: the short transaction must not
    sit in SQLite's busy handler on the event loop (the loop would stop, and with it the other writer's
    release here), but wait on the writer's thread and commit once the lock is free."""
    await _write_while_another_process_writes(
        sqlite_db, tmp_path, lambda v: sqlite_db.on_writer_thread(_insert(v), short=True)
    )


async def _write_while_another_process_writes(
    db: Database, tmp_path: Path, write: Callable[[str], Awaitable[int]]
) -> None:
    """``write(value)`` (a short transaction returning the thread it ran on) while another connection
    holds the write lock: it must wait off the loop and commit once the lock is free."""
    await write("opens the writer")
    other = sqlite3.connect(tmp_path / "bridge.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (v) VALUES ('other')")
    loop_ran = anyio.Event()

    async def release() -> None:
        await anyio.sleep(0.2)
        loop_ran.set()  # only reached while the loop runs
        other.execute("COMMIT")

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release)
            thread = await write("short")
    assert loop_ran.is_set() and thread != threading.get_ident()
    assert await _values(db) == ["opens the writer", "other", "short"]
    other.close()


async def test_a_short_transaction_waits_for_a_release_of_memory_on_the_writers_connection(
    sqlite_db: Database,
) -> None:
    """``release_memory`` uses the writer's connection on its own thread: a short transaction then goes to
    that thread after it rather than using the connection from two threads at once."""
    await sqlite_db.on_writer_thread(_insert("opens the writer"))
    writer = sqlite_db._thread_writer
    assert writer is not None and writer._conn is not None
    conn, started, go = writer._conn, threading.Event(), threading.Event()

    def busy_elsewhere() -> None:
        with conn.lock:
            started.set()
            go.wait(10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run, busy_elsewhere)
        await anyio.to_thread.run_sync(started.wait, 10)
        tg.start_soon(anyio.to_thread.run_sync, go.set)  # runs once the short transaction has tried
        thread = await sqlite_db.on_writer_thread(_insert("short"), short=True)
    assert thread == conn._thread.ident
    assert await _values(sqlite_db) == ["opens the writer", "short"]
    assert await sqlite_driver.release_memory() >= 1


async def test_the_writer_never_checkpoints_on_commit_a_thread_of_its_own_does(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """A checkpoint writes the database file and syncs it: not on the event loop's thread (where short
    transactions commit), but every ``CHECKPOINT_EVERY`` commits on the checkpoint thread."""
    for i in range(CHECKPOINT_EVERY - 1):
        await sqlite_db.on_writer_thread(_insert(f"m{i}"), short=True)
    writer = sqlite_db._thread_writer
    assert writer is not None and writer._conn is not None
    autocheckpoint = writer._conn.sqlite.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert autocheckpoint == 0 and writer.checkpointer.checkpoints == 0
    await sqlite_db.on_writer_thread(_insert("last"), short=True)
    running = writer.checkpointer.running
    assert running is not None
    await anyio.to_thread.run_sync(running.result, 10)
    assert writer.checkpointer.checkpoints == 1
    check = sqlite3.connect(tmp_path / "bridge.db")
    busy, frames, copied = check.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames == copied  # everything written is in the database file
    check.close()
    assert len(await _values(sqlite_db)) == CHECKPOINT_EVERY
    await sqlite_db.close()
    assert writer.checkpointer._executor is None  # closed with the database


def _core_insert(value: str) -> Callable[[Connection], int]:
    def work(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
        return threading.get_ident()

    return work


async def test_a_short_transact_body_runs_on_the_callers_thread_a_long_one_on_the_writers(
    sqlite_db: Database,
) -> None:
    assert await sqlite_db.transact(_core_insert("short")) == threading.get_ident()
    assert await sqlite_db.transact(_core_insert("long"), short=False) != threading.get_ident()
    assert await _values(sqlite_db) == ["short", "long"]


async def test_a_short_transact_body_never_waits_on_the_loop_for_another_processes_writer(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """As ``on_writer_thread(short=True)``: with the write lock held elsewhere, the body waits on the
    writer's thread (SQLite's busy handler there) and commits once the lock is free; the loop runs on."""
    await _write_while_another_process_writes(
        sqlite_db, tmp_path, lambda v: sqlite_db.transact(_core_insert(v))
    )
