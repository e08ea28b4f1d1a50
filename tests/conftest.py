"""Shared fixtures: real PostgreSQL and Redis (found or started, see msgr_bridge.testing.servers), and a
migrated ``Database`` on both backends.

* ``pg_url``: a fresh, uniquely named database for this test run (dropped at the end).
* ``redis_url``: a Redis URL.
* ``db``: parametrized over ``sqlite`` and ``postgres``; a migrated, empty ``Database`` per test. SQLite gets
  a copy of a migrated template file; PostgreSQL shares the run's database, truncated before each test.
* ``empty_db``: the same two backends, never migrated (for migration and schema-check tests).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from msgr_bridge.store.db import Database
from msgr_bridge.store.models import ALL_TABLES
from msgr_bridge.testing import servers

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def run_sync[T](fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from a synchronous (session) fixture, in its own thread and event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()  # type: ignore[arg-type]


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with servers.postgres_admin_url() as url:
        yield url


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    name = servers.unique_name("msgr_test")
    run_sync(lambda: create_database(pg_admin_url, name))
    try:
        yield with_database(pg_admin_url, name)
    finally:
        run_sync(lambda: drop_database(pg_admin_url, name))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with servers.redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def _pg_migrated(pg_url: str) -> str:
    async def migrate() -> None:
        async with Database(pg_url) as db:
            await db.migrate()

    run_sync(migrate)
    return pg_url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def migrate() -> None:
        async with Database(f"sqlite:///{path}") as db:
            await db.migrate()

    run_sync(migrate)
    return path


TRUNCATE = "TRUNCATE " + ", ".join(t.name for t in reversed(ALL_TABLES)) + " RESTART IDENTITY CASCADE"


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "bridge.db"
        shutil.copyfile(template, path)
        database = Database(f"sqlite:///{path}")
        await database.connect()
    else:
        database = Database(request.getfixturevalue("_pg_migrated"))
        await database.connect()
        async with database.engine.begin() as conn:
            # Replica mode skips triggers for this transaction, including audit_log's refusal of TRUNCATE.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(TRUNCATE))
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(params=BACKENDS)
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A connected, never migrated database (a fresh file, or a fresh PostgreSQL database)."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
        await database.connect()
        try:
            yield database
        finally:
            await database.close()
        return
    admin: str = request.getfixturevalue("pg_admin_url")
    name = servers.unique_name("msgr_empty")
    await create_database(admin, name)
    database = Database(with_database(admin, name))
    await database.connect()
    try:
        yield database
    finally:
        await database.close()
        await drop_database(admin, name)


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    """Tests that take ``pg_url``, ``pg_admin_url`` or ``redis_url`` directly get their server's marker."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"pg_url", "pg_admin_url"} and "postgres" not in item.keywords:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in names and "redis" not in item.keywords:
            item.add_marker(pytest.mark.redis)
