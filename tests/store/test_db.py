"""Database: URLs, connecting, migrations, schema checks and the append-only audit log, on both backends."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, StatementError

from msgr_bridge.errors import DatabaseError, SchemaOutdatedError, SchemaTooNewError
from msgr_bridge.store.db import Database, normalize_url
from msgr_bridge.store.models import AuditLog, Base, Tenant
from msgr_bridge.store.repos.entities import ChannelRepo
from msgr_bridge.store.search_schema import include_object


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///data/bridge.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///data/bridge.db", "sqlite+aiosqlite"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql+asyncpg"),
    ],
)
def test_urls_are_normalized_to_async_drivers(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "not a url", "sqlite+pysqlcipher:///x.db"])
def test_unsupported_urls_are_refused_with_a_hint(url: str) -> None:
    with pytest.raises(DatabaseError) as info:
        Database(url)
    assert info.value.hint is not None and "postgresql://" in info.value.hint


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_postgres_is_a_database_error_without_the_password() -> None:
    db = Database(f"postgresql://bridge:s3cret-pw@127.0.0.1:{_closed_port()}/bridge")
    with pytest.raises(DatabaseError) as info:
        await db.connect()
    assert "127.0.0.1" in info.value.message
    assert "s3cret-pw" not in info.value.explain()
    assert info.value.hint


@pytest.mark.postgres
async def test_missing_postgres_database_is_a_database_error(pg_admin_url: str) -> None:
    db = Database(pg_admin_url.rsplit("/", 1)[0] + "/msgr_no_such_database")
    with pytest.raises(DatabaseError, match="msgr_no_such_database"):
        await db.connect()


async def test_unusable_sqlite_path_is_a_database_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseError):
        await Database(f"sqlite:///{blocker}/sub/bridge.db").connect()


async def test_sqlite_creates_the_parent_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "bridge.db"
    async with Database(f"sqlite:///{path}") as db, db.engine.connect() as conn:
        journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
        busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
    assert path.exists()
    assert (journal, foreign_keys) == ("wal", 1)
    assert busy and busy > 0


async def test_using_a_database_before_connect_explains_itself() -> None:
    db = Database("sqlite:///:memory:")
    with pytest.raises(DatabaseError, match="not connected"):
        _ = db.engine


async def test_empty_database_is_outdated_until_migrated(empty_db: Database) -> None:
    assert await empty_db.current_revision() is None
    with pytest.raises(SchemaOutdatedError) as info:
        await empty_db.check_schema()
    assert "msgr-bridge migrate" in (info.value.hint or "")
    await empty_db.migrate()
    assert await empty_db.check_schema() == Database.head_revision()


async def test_older_revision_is_outdated(empty_db: Database) -> None:
    await empty_db.migrate("0001")
    with pytest.raises(SchemaOutdatedError, match="0001"):
        await empty_db.check_schema()


async def test_schema_newer_than_the_code_is_refused(empty_db: Database) -> None:
    # its own database: the shared migrated one must keep its revision for the tests after this one
    await empty_db.migrate()
    async with empty_db.session() as s:
        await s.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaTooNewError) as info:
        await empty_db.check_schema()
    assert "newer msgr-bridge" in info.value.message
    assert "upgrade msgr-bridge" in (info.value.hint or "")
    assert isinstance(info.value, DatabaseError)


async def test_migrations_go_down_and_up_again(empty_db: Database) -> None:
    await empty_db.migrate()
    await empty_db.downgrade("base")
    assert await empty_db.current_revision() is None
    await empty_db.migrate()
    assert await empty_db.current_revision() == Database.head_revision()


async def test_models_match_the_migrated_schema(db: Database) -> None:
    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_audit_log_refuses_update_and_delete(db: Database) -> None:
    async with db.session() as s:
        s.add(AuditLog(actor="op", action="x", hash="h1"))
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.session() as s:
                await s.execute(text(statement))
    async with db.session() as s:
        assert (await s.execute(text("SELECT actor FROM audit_log"))).scalars().all() == ["op"]


async def test_naive_timestamps_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with db.session() as s:
            s.add(Tenant(id="t", created_at=datetime(2026, 1, 1)))
            await s.flush()


async def test_timestamps_come_back_aware_in_utc(db: Database) -> None:
    paris = timezone(timedelta(hours=1))
    async with db.session() as s:
        s.add(Tenant(id="t", created_at=datetime(2026, 1, 1, 13, 0, tzinfo=paris)))
    async with db.session() as s:
        got = await s.get_one(Tenant, "t")
        assert got.created_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        assert got.created_at.tzinfo == UTC


async def test_migration_0004_lists_conversations_known_only_through_messages(empty_db: Database) -> None:
    await empty_db.migrate("0003")
    async with empty_db.session() as s:
        await s.execute(text("INSERT INTO tenants (id, created_at) VALUES ('t', CURRENT_TIMESTAMP)"))
        for acct in ("a1", "a2"):
            await s.execute(
                text(
                    "INSERT INTO bridge_accounts (id, tenant, network, remote_user_id, settings,"
                    " capabilities, state, created_at, updated_at)"
                    " VALUES (:id, 't', 'xmpp', :id, '{}', '{}', 'stopped',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": acct},
            )
        await s.execute(
            text(
                "INSERT INTO bridge_channels (account_id, network, remote_id, name, type, updated_at)"
                " VALUES ('a1', 'xmpp', 'room@muc', 'Room', 'group', CURRENT_TIMESTAMP)"
            )
        )
        for mid, conv in ((1, "bob@x"), (2, "bob@x"), (3, "room@muc")):
            await s.execute(
                text(
                    "INSERT INTO messages (id, network, conversation_id, remote_id, part, sender_id, text,"
                    " format, attachments, mentions, sent_at, edit_version) VALUES (:id, 'xmpp', :conv,"
                    " :rid, 0, 'bob@x', '', 'plain', '[]', '[]', CURRENT_TIMESTAMP, 0)"
                ),
                {"id": mid, "conv": conv, "rid": f"m{mid}"},
            )
        for acct, mid in (("a1", 1), ("a1", 2), ("a1", 3), ("a2", 3)):
            await s.execute(
                text("INSERT INTO message_accounts (account_id, message_id) VALUES (:a, :m)"),
                {"a": acct, "m": mid},
            )
    await empty_db.migrate()
    channels = ChannelRepo(empty_db)
    assert [(c.remote_id, c.name) for c in await channels.list("a1")] == [
        ("bob@x", None),
        ("room@muc", "Room"),
    ]
    assert [c.remote_id for c in await channels.list("a2")] == ["room@muc"]
