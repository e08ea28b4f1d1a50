"""Statements compiled once and run whole on a SQLite writer's thread (``store.compiled``,
``Database.on_writer_thread``): rows read back through the ORM as if it wrote them; a failure rolls back."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import bindparam, select

from msgr_bridge.errors import DatabaseError
from msgr_bridge.store.compiled import CompiledStatement
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import EventLogRow
from msgr_bridge.store.repos._base import table
from msgr_bridge.store.repos.event_log import LOG_COLUMNS, EventLogRepo

LOG = table(EventLogRow)


async def test_rows_written_on_the_thread_read_back_like_the_orms(db: Database) -> None:
    if not db.writes_on_thread:
        with pytest.raises(DatabaseError, match="SQLite file"):
            await db.on_writer_thread(lambda conn: None)
        return
    insert = CompiledStatement(LOG.insert().returning(LOG.c.seq), db.engine.dialect, LOG_COLUMNS)
    at = datetime(2026, 12, 7, 18, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    row = {"tenant": "t", "account_id": None, "conversation_id": "c", "kind": "message",
           "payload": {"text": "héllo", "n": [1, 2]}, "created_at": at}  # fmt: skip
    (seq,) = await db.on_writer_thread(lambda conn: insert.execute(conn, row)[0])
    (logged,) = await EventLogRepo(db).read_after(seq - 1)
    assert logged.seq == seq and logged.payload == {"text": "héllo", "n": [1, 2]}
    assert logged.created_at == at and logged.created_at.tzinfo == UTC  # stored in UTC, read back aware


async def test_a_failing_transaction_leaves_nothing_and_the_next_one_works(db: Database) -> None:
    if not db.writes_on_thread:
        return
    insert = CompiledStatement(LOG.insert(), db.engine.dialect, LOG_COLUMNS)
    row = {"tenant": "t", "account_id": None, "conversation_id": None, "kind": "k", "payload": {},
           "created_at": datetime.now(UTC)}  # fmt: skip

    def write_then_fail(conn: sqlite3.Connection) -> None:
        insert.execute(conn, row)
        raise RuntimeError("a bug after the first statement")

    with pytest.raises(RuntimeError):
        await db.on_writer_thread(write_then_fail)
    assert await EventLogRepo(db).last_seq() == 0
    await db.on_writer_thread(lambda conn: insert.execute(conn, row))
    assert await EventLogRepo(db).last_seq() == 1
    async with db.session():  # the pooled writers still get the lock
        pass


def test_a_column_left_to_its_python_default_is_refused_when_compiling(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    dialect = create_engine(f"sqlite:///{tmp_path / 'x.db'}").dialect
    with pytest.raises(DatabaseError, match=r"'created_at'.*has no value"):
        CompiledStatement(
            LOG.insert(), dialect, ["tenant", "account_id", "conversation_id", "kind", "payload"]
        )
    with pytest.raises(DatabaseError, match="IN list"):
        CompiledStatement(
            select(LOG.c.seq).where(LOG.c.kind.in_(bindparam("kinds", expanding=True))), dialect
        )


async def test_an_in_memory_database_writes_through_sessions_only() -> None:
    async with Database("sqlite:///:memory:") as db:
        assert not db.writes_on_thread  # a second connection would open another, empty database
