"""SQLite with one trip to aiosqlite's thread per statement (``store.sqlite_driver``), under SQLAlchemy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from msgr_bridge.store import sqlite_driver
from msgr_bridge.store.db import Database
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
