"""``Database.transact``: one write transaction handed a synchronous SQLAlchemy connection; on a SQLite file
it runs whole on the writer's thread, on PostgreSQL (and in-memory SQLite) in a session's connection. Same
rows, same rollback, on every backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from msgr_bridge.errors import DatabaseError
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import EventLogRow
from msgr_bridge.store.repos._base import table
from msgr_bridge.store.repos.event_log import EventLogRepo

LOG = table(EventLogRow)


async def _count(db: Database) -> int:
    async with db.read() as s:
        return len((await s.execute(select(LOG.c.seq))).all())


def _row(**extra: object) -> dict[str, object]:
    return {"tenant": "t", "account_id": None, "conversation_id": "c", "kind": "message",
            "payload": {"text": "héllo", "n": [1, 2]}, "created_at": datetime.now(UTC), **extra}  # fmt: skip


async def test_rows_written_in_a_transact_body_read_back_like_a_sessions(db: Database) -> None:
    at = datetime(2026, 12, 7, 18, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    threads: list[int] = []

    def body(conn: Connection) -> int:
        threads.append(threading.get_ident())
        seq = conn.execute(LOG.insert().returning(LOG.c.seq), _row(created_at=at)).scalar_one()
        # an expanding IN list and a typed bound value: what compiled statements cannot take
        stmt = select(LOG.c.created_at).where(LOG.c.seq.in_(bindparam("seqs", expanding=True)))
        assert conn.execute(stmt, {"seqs": [seq, seq + 100]}).scalar_one() == at
        return int(seq)

    seq = await db.transact(body)
    (logged,) = await EventLogRepo(db).read_after(seq - 1)
    assert logged.payload == {"text": "héllo", "n": [1, 2]} and logged.created_at == at
    assert logged.created_at.tzinfo == UTC
    # a short body runs on the caller's thread: a SQLite file's writer connection used right there, or a
    # session's connection (run_sync); a long one goes to the writer's thread (test_sqlite_driver.py)
    assert threads[0] == threading.get_ident()


async def test_a_failing_body_leaves_nothing_and_the_next_one_works(db: Database) -> None:
    def write_then_fail(conn: Connection) -> None:
        conn.execute(LOG.insert(), _row())
        raise RuntimeError("a bug after the first statement")

    with pytest.raises(RuntimeError):
        await db.transact(write_then_fail)
    assert await _count(db) == 0
    await db.transact(lambda conn: conn.execute(LOG.insert(), _row()))
    assert await _count(db) == 1
    async with db.session():  # the pooled writers still get the lock
        pass
    # the raw writer-thread path shares the connection and its thread: both keep working in turn
    if db.writes_on_thread:
        await db.on_writer_thread(lambda conn: conn.execute("SELECT 1").fetchall())
        await db.transact(lambda conn: conn.execute(LOG.insert(), _row()))
        assert await _count(db) == 2


async def test_a_database_not_connected_says_so(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'bridge.db'}")
    with pytest.raises(DatabaseError, match="not connected"):
        await db.transact(lambda conn: None)
