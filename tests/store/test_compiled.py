"""Statements compiled once and run whole on a SQLite writer's thread (``store.compiled``,
``Database.on_writer_thread``): rows read back through the ORM as if it wrote them; a failure rolls back."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from msgr_bridge.errors import DatabaseError
from msgr_bridge.store.compiled import CompiledRowsInsert, CompiledStatement, PreparedQuery
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


async def test_many_rows_go_a_chunk_per_statement_in_the_order_given(db: Database) -> None:
    if not db.writes_on_thread:
        return
    insert = CompiledRowsInsert(
        LOG.insert(), db.engine.dialect, LOG_COLUMNS, [LOG.c.seq, LOG.c.kind], max_rows=4
    )
    at = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)
    rows = [{"tenant": "t", "account_id": None, "conversation_id": "c", "kind": f"k{i}", "payload": {"i": i},
             "created_at": at} for i in range(11)]  # fmt: skip
    statements: list[str] = []

    def write(conn: sqlite3.Connection) -> list[tuple[int, str]]:
        conn.set_trace_callback(statements.append)
        try:
            return insert.execute(conn, rows)
        finally:
            conn.set_trace_callback(None)

    returned = sorted(await db.on_writer_thread(write))
    assert [kind for _, kind in returned] == [f"k{i}" for i in range(11)]  # seqs grow in the order given
    assert len([s for s in statements if s.startswith("INSERT")]) == 4  # 4 + 4 + 2 + 1 rows
    logged = await EventLogRepo(db).read_after(0)
    assert [(e.seq, e.kind, e.payload, e.created_at) for e in logged] == [
        (seq, kind, {"i": i}, at) for i, (seq, kind) in enumerate(returned)
    ]


def test_params_are_the_values_in_statement_order_converted_where_the_type_says(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    dialect = create_engine(f"sqlite:///{tmp_path / 'x.db'}").dialect
    insert = CompiledStatement(LOG.insert(), dialect, LOG_COLUMNS)
    at = datetime(2026, 12, 7, 18, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    row = {"tenant": "t", "account_id": None, "conversation_id": "c", "kind": "k", "payload": {"n": [1]},
           "created_at": at}  # fmt: skip
    by_name = dict(zip(insert.keys, insert.params(row), strict=True))
    assert by_name == {"tenant": "t", "account_id": None, "conversation_id": "c", "kind": "k",
                       "payload": '{"n": [1]}', "created_at": "2026-12-07 16:30:00.000005"}  # fmt: skip
    assert (
        insert.params({**row, "payload": None})[insert.keys.index("payload")] is None
    )  # None: not converted
    # a value written into the statement keeps its place among the caller's
    fixed = CompiledStatement(
        select(LOG.c.seq).where(LOG.c.kind == "fixed", LOG.c.tenant == bindparam("t")), dialect, ["t"]
    )
    assert fixed.keys == ("", "t") and fixed.params({"t": "x"}) == ["fixed", "x"]


def test_a_column_left_to_its_python_default_is_refused_when_compiling(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    dialect = create_engine(f"sqlite:///{tmp_path / 'x.db'}").dialect
    with pytest.raises(DatabaseError, match=r"'created_at'.*has no value"):
        CompiledStatement(
            LOG.insert(), dialect, ["tenant", "account_id", "conversation_id", "kind", "payload"]
        )
    with pytest.raises(DatabaseError, match="fixed in the statement"):
        CompiledRowsInsert(
            LOG.insert().values(kind="k"), dialect, [c for c in LOG_COLUMNS if c != "kind"], []
        )
    with pytest.raises(DatabaseError, match="IN list"):
        CompiledStatement(
            select(LOG.c.seq).where(LOG.c.kind.in_(bindparam("kinds", expanding=True))), dialect
        )


async def test_an_in_memory_database_writes_through_sessions_only() -> None:
    async with Database("sqlite:///:memory:") as db:
        assert not db.writes_on_thread  # a second connection would open another, empty database


# PreparedQuery: a Core statement built once; on SQLite's writer connection it runs without SQLAlchemy's
# execution machinery, elsewhere through conn.execute. The rows must be the same either way.

_BY_KINDS = PreparedQuery(
    select(LOG.c.seq, LOG.c.kind, LOG.c.payload, LOG.c.created_at)
    .where(
        LOG.c.kind.in_(bindparam("b_kinds", expanding=True)),
        LOG.c.tenant.in_(["t", "other"]),  # an IN list fixed in the statement
        LOG.c.created_at <= bindparam("b_until", type_=LOG.c.created_at.type),
        LOG.c.seq > bindparam("b_after"),
    )
    .order_by(LOG.c.seq)
)
_RENAME = PreparedQuery(
    update(LOG)
    .where(LOG.c.seq.in_(bindparam("b_seqs", expanding=True)), LOG.c.kind == bindparam("b_from"))
    .values(kind=bindparam("b_to"))
    .returning(LOG.c.seq, LOG.c.created_at)
)


async def test_a_prepared_query_reads_the_same_rows_as_sqlalchemy(db: Database) -> None:
    at = datetime(2026, 12, 7, 18, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    kinds = ["a", "b", "c", "a", "b"]
    rows = [{"tenant": "t", "account_id": None, "conversation_id": "c", "kind": k,
             "payload": {"text": "héllo", "i": i}, "created_at": at + timedelta(seconds=i)}
            for i, k in enumerate(kinds)]  # fmt: skip
    await db.transact(lambda conn: conn.execute(LOG.insert(), rows), short=False)

    def both(conn: Connection) -> list[tuple[list[Any], list[Any]]]:
        out = []
        for wanted in (["a"], ["a", "b"], ["c", "b", "a"], ["a"]):  # lengths 1, 2, 3, then 1 again
            params = {"b_kinds": wanted, "b_until": at + timedelta(seconds=3), "b_after": 0}
            out.append((_BY_KINDS.rows(conn, params), conn.execute(_BY_KINDS.stmt, params).all()))
        return out

    for prepared, reference in await db.transact(both):
        assert [tuple(r) for r in prepared] == [tuple(r) for r in reference] != []
        assert all(r.created_at.tzinfo == UTC and isinstance(r.payload, dict) for r in prepared)
        assert [(r.seq, r.kind) for r in prepared] == [(r.seq, r.kind) for r in reference]
    # an update with RETURNING, and a statement without result rows
    changed = await db.transact(
        lambda conn: _RENAME.rows(conn, {"b_seqs": [1, 2, 4], "b_from": "a", "b_to": "z"})
    )
    assert sorted(r.seq for r in changed) == [1, 4] and changed[0].created_at.tzinfo == UTC
    assert (
        await db.transact(lambda conn: _RENAME.scalars(conn, {"b_seqs": [], "b_from": "a", "b_to": "z"}))
        == []
    )
    left = await db.transact(
        lambda conn: _BY_KINDS.scalars(
            conn, {"b_kinds": ["z", "a"], "b_until": at + timedelta(days=1), "b_after": 0}
        )
    )
    assert left == [1, 4]


async def test_a_prepared_query_past_its_layouts_still_answers(db: Database) -> None:
    query = PreparedQuery(select(LOG.c.seq).where(LOG.c.seq.in_(bindparam("b_seqs", expanding=True))))
    row = {"tenant": "t", "account_id": None, "conversation_id": None, "kind": "k", "payload": {},
           "created_at": datetime.now(UTC)}  # fmt: skip
    await db.transact(lambda conn: conn.execute(LOG.insert(), [row] * 3))
    for n in range(1, PreparedQuery.MAX_LAYOUTS + 5):
        got = await db.transact(lambda conn, n=n: query.scalars(conn, {"b_seqs": list(range(1, n + 1))}))
        assert sorted(got) == list(range(1, min(n, 3) + 1))
    assert len(query._layouts) <= PreparedQuery.MAX_LAYOUTS


async def test_a_prepared_query_refuses_what_it_cannot_run_itself(db: Database) -> None:
    if not db.writes_on_thread:  # PostgreSQL: conn.execute runs it
        return
    literal = PreparedQuery(select(LOG.c.seq).where(LOG.c.kind == bindparam("b_kind", literal_execute=True)))
    with pytest.raises(DatabaseError, match="writes a parameter into its SQL"):
        await db.transact(lambda conn: literal.rows(conn, {"b_kind": "x"}))
    missing = PreparedQuery(select(LOG.c.seq).where(LOG.c.kind == bindparam("b_kind")))
    with pytest.raises(DatabaseError, match="no value for"):
        await db.transact(lambda conn: missing.rows(conn, {}))
