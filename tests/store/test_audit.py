"""The audit chain: appended rows verify; each kind of tampering (changed, removed, inserted) is detected.

The migration's triggers refuse UPDATE and DELETE; the tamper tests drop them first, as an attacker with
database access would, and the chain must still show what was done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from msgr_bridge.errors import BridgeError
from msgr_bridge.store import audit
from msgr_bridge.store.db import Database

PG_URL = os.environ.get("MSGR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/bridge.db")
        await database.connect()
        await database.migrate()
        yield database
        await database.close()
        return
    name = f"audit_{os.getpid()}_{tmp_path.name[-8:].replace('-', '_')}".lower()
    admin = Database(PG_URL)
    try:
        await admin.connect()
    except BridgeError:
        pytest.skip("no PostgreSQL answers at MSGR_TEST_POSTGRES_URL / 127.0.0.1:5432")
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(PG_URL.rsplit("/", 1)[0] + "/" + name)
    await database.connect()
    await database.migrate()
    yield database
    await database.close()
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'DROP DATABASE "{name}"'))
    await admin.close()


async def _seed(db: Database, n: int = 5) -> list[audit.AuditEntry]:
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        async with db.session() as s:
            out.append(
                await audit.append(
                    s,
                    f"user:u{i}",
                    "message.send",
                    f"acct-1/conv-{i}",
                    {"txn": f"t{i}", "n": i, "tags": ["a", "ü"], "when": start},
                    at=start + timedelta(seconds=i, microseconds=123),
                )
            )
    return out


async def _drop_triggers(db: Database) -> None:
    async with db.session() as s:
        if db.is_sqlite:
            await s.execute(text("DROP TRIGGER audit_log_no_update"))
            await s.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            await s.execute(text("DROP TRIGGER audit_log_append_only ON audit_log"))


async def _verify(db: Database, **kw: object) -> audit.VerifyReport:
    async with db.session() as s:
        return await audit.verify(s, **kw)  # type: ignore[arg-type]


async def test_hash_is_sha256_of_prev_hash_and_canonical_json(db: Database) -> None:
    first, second = await _seed(db, 2)
    body = json.dumps(
        {
            "action": "message.send",
            "actor": "user:u1",
            "at": "2030-01-01T12:00:01.000123+00:00",
            "details": {"n": 1, "tags": ["a", "ü"], "txn": "t1", "when": "2030-01-01T12:00:00.000000+00:00"},
            "target": "acct-1/conv-1",
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert "ü" in body and " " not in body
    assert second.prev_hash == first.hash
    assert second.hash == hashlib.sha256((first.hash + body).encode()).hexdigest()
    assert first.prev_hash is None


async def test_intact_chain_verifies(db: Database) -> None:
    assert (await _verify(db)).ok  # empty
    rows = await _seed(db)
    report = await _verify(db)
    assert report.ok and report.rows_checked == 5
    assert (report.head_seq, report.head_hash) == (rows[-1].seq, rows[-1].hash)
    async with db.session() as s:
        assert await audit.head(s) == (rows[-1].seq, rows[-1].hash)
        assert [e.seq for e in await audit.entries(s, after_seq=rows[1].seq)] == [r.seq for r in rows[2:]]
    assert "intact" in report.explain()


async def test_the_database_refuses_update_and_delete(db: Database) -> None:
    await _seed(db, 2)
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.session() as s:
                await s.execute(text(statement))
    assert (await _verify(db)).rows_checked == 2


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = :seq",
        "UPDATE audit_log SET target = NULL WHERE seq = :seq",
        "UPDATE audit_log SET action = 'message.read' WHERE seq = :seq",
    ],
)
async def test_a_changed_field_is_detected(db: Database, statement: str) -> None:
    rows = await _seed(db)
    await _drop_triggers(db)
    async with db.session() as s:
        await s.execute(text(statement), {"seq": rows[2].seq})
    report = await _verify(db)
    assert (report.ok, report.problem, report.broken_seq) == (False, "changed", rows[2].seq)
    assert "BROKEN" in report.explain()


async def test_changed_details_and_timestamp_are_detected(db: Database) -> None:
    rows = await _seed(db)
    await _drop_triggers(db)
    async with db.session() as s:
        row = await s.get(audit.AuditLog, rows[1].seq)
        assert row is not None
        row.details = {**row.details, "txn": "forged"}
    assert (await _verify(db)).broken_seq == rows[1].seq
    async with db.session() as s:
        row = await s.get(audit.AuditLog, rows[1].seq)
        assert row is not None
        row.details = rows[1].details
    assert (await _verify(db)).ok  # restoring the exact fields restores the chain
    async with db.session() as s:
        row = await s.get(audit.AuditLog, rows[3].seq)
        assert row is not None
        row.at = row.at + timedelta(microseconds=1)
    report = await _verify(db)
    assert (report.problem, report.broken_seq) == ("changed", rows[3].seq)


async def test_a_changed_and_rehashed_row_is_detected(db: Database) -> None:
    rows = await _seed(db)
    await _drop_triggers(db)
    async with db.session() as s:
        row = await s.get(audit.AuditLog, rows[2].seq)
        assert row is not None
        row.actor = "user:mallory"
        row.hash = audit.row_hash(
            row.prev_hash, audit.canonical(row.at, row.actor, row.action, row.target, row.details)
        )
    report = await _verify(db)
    assert (report.problem, report.broken_seq) == ("changed", rows[2].seq)


@pytest.mark.parametrize("index", [0, 2])
async def test_a_removed_row_is_detected(db: Database, index: int) -> None:
    rows = await _seed(db)
    await _drop_triggers(db)
    async with db.session() as s:
        await s.execute(text("DELETE FROM audit_log WHERE seq = :seq"), {"seq": rows[index].seq})
    report = await _verify(db)
    assert (report.ok, report.problem, report.broken_seq) == (False, "removed", rows[index + 1].seq)


async def test_removing_the_last_rows_is_caught_by_an_anchor(db: Database) -> None:
    rows = await _seed(db)
    async with db.session() as s:
        anchor = await audit.head(s)
    assert anchor is not None
    assert (await _verify(db, anchor=anchor)).ok
    await _drop_triggers(db)
    async with db.session() as s:
        await s.execute(text("DELETE FROM audit_log WHERE seq = :seq"), {"seq": rows[-1].seq})
    assert (await _verify(db)).ok  # a chain cut at its end is still a valid chain...
    report = await _verify(db, anchor=anchor)
    assert (report.ok, report.problem) == (False, "anchor_mismatch")  # ...but not the one we anchored


@pytest.mark.parametrize("forge_hash", [True, False], ids=["valid-hash", "garbage-hash"])
async def test_an_inserted_row_is_detected(db: Database, forge_hash: bool) -> None:
    rows = await _seed(db)
    await _drop_triggers(db)
    at = rows[1].at + timedelta(milliseconds=1)
    details: dict[str, object] = {"txn": "forged"}
    digest = (
        audit.row_hash(
            rows[1].hash, audit.canonical(at, "user:mallory", "message.delete", "acct-1/conv-9", details)
        )
        if forge_hash
        else "0" * 64
    )
    async with db.session() as s:
        # make room after row 2, as an attacker renumbering the table would
        for r in reversed(rows[2:]):
            await s.execute(text("UPDATE audit_log SET seq = seq + 1 WHERE seq = :seq"), {"seq": r.seq})
        s.add(
            audit.AuditLog(
                seq=rows[2].seq,
                at=at,
                actor="user:mallory",
                action="message.delete",
                target="acct-1/conv-9",
                details=details,
                prev_hash=rows[1].hash,
                hash=digest,
            )
        )
    report = await _verify(db)
    assert (report.ok, report.problem, report.broken_seq) == (False, "inserted", rows[2].seq)


async def test_details_must_be_json_values(db: Database) -> None:
    async with db.session() as s:
        with pytest.raises(BridgeError, match="JSON values"):
            await audit.append(s, "system", "config.change", None, {"obj": object()})
        with pytest.raises(BridgeError, match="actor and an action"):
            await audit.append(s, "", "config.change")


async def test_appends_keep_one_chain_across_sessions(db: Database) -> None:
    await _seed(db, 3)
    async with db.session() as s:
        await audit.append(s, "system", "config.change", None, {"key": "logging.level"})
        await audit.append(s, "system", "config.change", None, {"key": "policy.dlp"})
    report = await _verify(db)
    assert report.ok and report.rows_checked == 5


async def test_appends_of_two_processes_and_a_rolled_back_one_keep_one_chain(db: Database) -> None:
    """An append links to the last row this process wrote when that row is still the head (one
    statement, issue 19); another writer, or a rollback, moves the head and must never fork the chain."""
    other = Database(db.url.render_as_string(hide_password=False))  # another process's engine
    await other.connect()
    try:
        for i in range(3):
            for who in (db, other):
                async with who.session() as s:
                    await audit.append(s, "system", "config.change", None, {"i": i})
        with pytest.raises(RuntimeError):
            async with db.session() as s:
                await audit.append(s, "system", "config.change", None, {"rolled": "back"})
                raise RuntimeError("the audited change failed")
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "audit_log" in statement:
                statements.append(statement)

        async with db.session() as s:
            await audit.append(s, "system", "config.change", None, {"after": "rollback"})
            event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
            await audit.append(s, "system", "config.change", None, {"again": True})
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
        assert len(statements) == 1  # the head was this process's own last row
        report = await _verify(db)
        assert report.ok and report.rows_checked == 8
    finally:
        await other.close()


async def test_appends_in_transact_bodies_keep_one_chain_with_session_appends(db: Database) -> None:
    """On SQLite a ``Database.transact`` body appends on the writer's thread (statements compiled once,
    its own guess at the head); a session's append in between moves the head, which the next body finds."""
    from msgr_bridge.store.audit import append_in

    await db.transact(lambda conn: append_in(conn, "user:a", "message.send", "outbox:1", {"n": 1}))
    await db.transact(lambda conn: append_in(conn, "user:a", "message.send", "outbox:2", {"n": 2}))
    async with db.session() as s:  # another writer: the head moves under the body's guess
        await audit.append(s, "system", "account.link", "acc:1", {"n": 3})
    entry = await db.transact(lambda conn: append_in(conn, "user:a", "message.send", "outbox:3", {"n": 4}))
    async with db.session() as s:
        report = await audit.verify(s)
        head = await audit.head(s)
    assert report.ok and report.rows_checked == 4, report.explain()
    assert head == (entry.seq, entry.hash) and entry.details == {"n": 4}
