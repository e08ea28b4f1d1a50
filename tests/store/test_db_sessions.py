"""Sessions on SQLite: writers of one process queue on a lock; read sessions wait for nobody."""

from __future__ import annotations

from pathlib import Path

import anyio
from sqlalchemy import func, select

from msgr_bridge.store.db import Database
from msgr_bridge.store.models import Tenant
from msgr_bridge.store.types import utcnow


async def migrated(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    await db.connect()
    await db.migrate()
    return db


async def count_tenants(db: Database) -> int:
    async with db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(Tenant)) or 0)


async def test_a_read_session_does_not_wait_for_an_open_write_transaction(tmp_path: Path) -> None:
    db = await migrated(tmp_path / "b.db")
    try:
        before = await count_tenants(db)
        written = anyio.Event()
        release = anyio.Event()

        async def writer() -> None:
            async with db.session() as s:
                s.add(Tenant(id="t-uncommitted", name="T", created_at=utcnow()))
                await s.flush()
                written.set()
                await release.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await written.wait()
            with anyio.fail_after(2):  # a reader queued behind the writer would hang here
                during = await count_tenants(db)
            release.set()
        assert during == before  # the uncommitted row is not visible
        assert await count_tenants(db) == before + 1
    finally:
        await db.close()


async def test_concurrent_writers_of_one_process_all_commit(tmp_path: Path) -> None:
    db = await migrated(tmp_path / "w.db")
    try:
        before = await count_tenants(db)

        async def write(i: int) -> None:
            async with db.session() as s:
                s.add(Tenant(id=f"t-{i}", name="T", created_at=utcnow()))
                await anyio.sleep(0.001)  # hold the transaction across a switch

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(write, i)
        assert await count_tenants(db) == before + 40
    finally:
        await db.close()


async def test_an_in_memory_database_serves_reads_and_writes_on_its_one_connection() -> None:
    async with Database("sqlite+aiosqlite://") as db:
        await db.migrate()

        async def write(i: int) -> None:
            async with db.session() as s:
                s.add(Tenant(id=f"m-{i}", name="T", created_at=utcnow()))

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(write, i)
                tg.start_soon(count_tenants, db)
        assert await count_tenants(db) >= 5


async def test_json_columns_keep_what_orjson_alone_would_refuse_or_round(db: Database) -> None:
    """JSON columns are written with orjson, which refuses integers past 64 bits and non-string keys, and
    would read such integers back as floats: a platform payload carrying them must come back unchanged."""
    from msgr_bridge.store.repos.event_log import EventLogRepo, NewEvent

    repo = EventLogRepo(db)
    payload = {"big": 2**70, "ids": [2**64 + 1, -(2**65)], "nested": {"n": 1.5, "s": "x"}}
    async with db.session() as s:
        (seq,) = await repo.append_many(s, [NewEvent("t1", None, None, "test", payload)])
    (row,) = [r for r in await repo.read_after(seq - 1) if r.seq == seq]
    assert row.payload == payload
    assert isinstance(row.payload["big"], int)
