"""The database handle: one async engine, migrations, schema checks and sessions.

Two backends, one code path:

* **SQLite** (the embedded default), ``sqlite:///data/bridge.db`` or ``sqlite+aiosqlite:///...``: opened
  through aiosqlite in WAL mode, with foreign keys on and a busy timeout; every transaction begins with
  ``BEGIN IMMEDIATE`` so two writers queue instead of failing with "database is locked" (writers of one
  process queue on a lock first; ``read()`` sessions begin deferred and wait for nobody). The parent
  directory of the file is created.
* **PostgreSQL**, ``postgresql://user:pw@host/db`` or ``postgresql+asyncpg://...``: through asyncpg.

Migrations live in the top-level ``migrations/`` folder of the source tree (numbered, described alembic
revisions). ``migrations_dir()`` finds them in this order: the ``MSGR_BRIDGE_MIGRATIONS`` environment
variable; ``msgr_bridge/_migrations`` inside the installed package (a wheel build can force-include the
folder there); the source tree two levels above the package (``src/msgr_bridge/store`` -> ``migrations/``),
which is what an editable install and a checkout use.

The bridge refuses to start on a schema it does not know (``check_schema``): newer than the code means the
database was migrated by a newer msgr-bridge; older means ``msgr-bridge migrate`` has not been run.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from ..errors import DatabaseError, SchemaOutdatedError, SchemaTooNewError
from ..extras import require
from ..jsonutil import dumps

if TYPE_CHECKING:
    import sqlite3

    from alembic.config import Config

    from .sqlite_driver import ThreadWriter

SUPPORTED = "sqlite:///path/to/bridge.db or postgresql://user:password@host:5432/dbname"


def migrations_dir() -> Path:
    """Where the alembic scripts are (see the module docstring for the search order)."""
    env = os.environ.get("MSGR_BRIDGE_MIGRATIONS")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parents[1] / "_migrations", here.parents[3] / "migrations"]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError(
        "cannot find the database migrations (looked in: " + ", ".join(str(c) for c in candidates) + ")",
        hint="set MSGR_BRIDGE_MIGRATIONS to the msgr-bridge source tree's migrations/ folder, "
        "or reinstall msgr-bridge",
    )


def alembic_config() -> Config:
    from alembic.config import Config  # alembic (and mako, pygments) only for migrate: ~10 MB RSS

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def script_revisions() -> tuple[set[str], str | None]:
    """The revisions of the migrations folder and its single head, read from the scripts' text.

    ``check_schema`` runs at every start: reading two assignments per script keeps alembic (with mako and
    pygments, about 10 MB of a bridge's memory) out of a process that does not migrate. Anything this
    simple reading cannot settle (a merge revision, several heads) is left to alembic."""
    revisions: dict[str, str | None] = {}
    for script in sorted((migrations_dir() / "versions").glob("*.py")):
        found = dict(_REVISION.findall(script.read_text(encoding="utf-8")))
        rev, down = found.get("revision", ""), found.get("down_revision", "None")
        if not re.fullmatch(r"[\"'][\w-]+[\"']", rev) or not re.fullmatch(r"None|[\"'][\w-]+[\"']", down):
            return _alembic_revisions()
        revisions[rev.strip("\"'")] = None if down == "None" else down.strip("\"'")
    heads = set(revisions) - {d for d in revisions.values() if d is not None}
    if len(heads) != 1:
        return _alembic_revisions()
    return set(revisions), heads.pop()


def _alembic_revisions() -> tuple[set[str], str | None]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}, script.get_current_head()


def normalize_url(url: str) -> URL:
    """Parse a database URL and switch it to the async driver; a clear ``DatabaseError`` for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"invalid database URL {url!r}: {exc}", hint=f"use {SUPPORTED}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
            raise DatabaseError(f"unsupported SQLite driver {parsed.drivername!r}", hint=f"use {SUPPORTED}")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise DatabaseError(
        f"unsupported database {parsed.drivername!r} in {redact(parsed)}", hint=f"use {SUPPORTED}"
    )


def redact(url: URL | str) -> str:
    """The URL with its password hidden, for messages and logs."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def _sqlite_path(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


class Database:
    """The bridge's database. Create it, ``await connect()``, then ``migrate()`` or ``check_schema()``.

    ``session()`` is the unit of work: it yields an ``AsyncSession`` inside a transaction that commits when
    the block ends and rolls back when it raises. Repositories take that session, so several of them can
    share one transaction (a batch of messages and their event log entries commit together).
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        self._echo = echo
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._read_sessions: async_sessionmaker[AsyncSession] | None = None
        self._write_lock: anyio.Lock | None = None
        self._single_connection = self.is_sqlite and _sqlite_path(self.url) is None
        self._thread_writer: ThreadWriter | None = None
        self.writer_thread_listeners: list[Callable[[], object]] = []
        """Called as each ``on_writer_thread`` transaction begins: SQLAlchemy's ``begin`` event, which
        sees every session's transaction, does not see these (``memory.QuietTrim`` counts both)."""

    def __repr__(self) -> str:
        return f"Database({redact(self.url)!r})"

    @property
    def redacted_url(self) -> str:
        return redact(self.url)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database's file (None for PostgreSQL and in-memory SQLite)."""
        return _sqlite_path(self.url) if self.is_sqlite else None

    def is_new_file(self) -> bool:
        """Whether this is a SQLite file that does not exist yet or is empty: nothing there to back up."""
        path = self.sqlite_file
        return path is not None and (not path.exists() or path.stat().st_size == 0)

    def refuse_missing_file(self) -> None:
        """A ``DatabaseError`` when this is a SQLite file that does not exist: tools other than ``migrate``
        and ``run`` never create a database (one run from the wrong directory would find an empty one)."""
        path = self.sqlite_file
        if path is not None and not path.exists():
            raise DatabaseError(
                f"there is no database at {path.resolve()}",
                hint="name the bridge's config (--config, $MSGR_BRIDGE_CONFIG) or its data directory "
                "(--data-dir, $MSGR_BRIDGE__BRIDGE__DATA_DIR), or run where config/msgr-bridge.toml is; "
                "`msgr-bridge migrate` creates a new database",
            )

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise DatabaseError("the database is not connected", hint="call `await db.connect()` first")
        return self._engine

    # --- lifecycle ----------------------------------------------------------------------------------------

    def _create_engine(self) -> AsyncEngine:
        # orjson writes JSON columns (payloads, details): the stdlib encoder was a visible share of a send.
        # Reading stays with the stdlib: orjson would turn an integer past 64 bits into a float.
        kwargs: dict[str, Any] = {
            "echo": self._echo,
            "json_serializer": dumps,
        }
        if self.is_sqlite:
            path = _sqlite_path(self.url)
            if path is None:
                kwargs["poolclass"] = StaticPool
            else:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise DatabaseError(
                        f"cannot create the directory for the SQLite database {path}: {exc}",
                        hint="check database.url and the permissions of its directory",
                    ) from None
            engine = create_async_engine(self.url, async_creator=self._sqlite_creator(), **kwargs)
            from .sqlite_driver import install_hooks

            install_hooks(engine)
            return engine
        kwargs.update(pool_size=self._pool_size, max_overflow=self._pool_size, connect_args={"timeout": 10})
        require("postgres", wanted_by="a PostgreSQL database.url")
        return create_async_engine(self.url, **kwargs)

    def _sqlite_connect_args(self) -> tuple[list[Any], dict[str, Any]]:
        """What SQLAlchemy's own dialect would pass to ``sqlite3.connect`` for this URL."""
        from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

        dialect = SQLiteDialect_aiosqlite(dbapi=SQLiteDialect_aiosqlite.import_dbapi())
        args, kwargs = dialect.create_connect_args(self.url)
        return list(args), dict(kwargs)

    def _sqlite_creator(self) -> Any:
        """Connections with one trip to aiosqlite's thread per statement (``sqlite_driver``)."""
        from .sqlite_driver import connect

        return partial(connect, *self._sqlite_connect_args())

    async def connect(self) -> None:
        """Open the engine and prove the database answers (``SELECT 1``)."""
        if self._engine is not None:
            return
        engine = self._create_engine()
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, TimeoutError, SQLAlchemyError) as exc:
            await engine.dispose()
            raise DatabaseError(
                f"cannot reach the database at {self.redacted_url}: {_first_line(exc)}",
                hint="check database.url; for PostgreSQL make sure the server runs, accepts connections from "
                "this host and the database exists (createdb); for SQLite make sure the file is writable",
            ) from exc
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        # On SQLite, read sessions begin deferred (the "begin" hook reads this option); on PostgreSQL a read
        # session is an ordinary one.
        self._read_sessions = (
            async_sessionmaker(
                engine.execution_options(msgr_read_only=True), expire_on_commit=False, autoflush=False
            )
            if self.is_sqlite
            else self._sessions
        )
        # SQLite has one writer at a time. Writers of this process queue on a lock instead of in SQLite's
        # busy handler, which sleeps in growing steps (up to 100 ms) and so leaves the database idle while
        # the lock is free; other processes (the CLI) still queue in the busy handler. A free lock is taken
        # without yielding to the event loop first (fast_acquire): an extra turn of the loop for each of a
        # send's four transactions, for nothing (issue 19).
        self._write_lock = anyio.Lock(fast_acquire=True) if self.is_sqlite else None

    @property
    def writes_on_thread(self) -> bool:
        """Whether ``on_writer_thread`` can be used: a SQLite file (an in-memory SQLite database is one
        connection, so a second one would be another, empty database)."""
        return self.is_sqlite and not self._single_connection

    async def on_writer_thread[T](self, fn: Callable[[sqlite3.Connection], T], *, short: bool = False) -> T:
        """Run ``fn`` as ONE write transaction on a SQLite writer connection's own thread (one trip, no
        SQLAlchemy per statement: ``sqlite_driver.ThreadWriter``). For the hot, short transactions whose
        statements are compiled once (``store.compiled``); it queues with ``session()`` writers.

        ``short``: a few statements, run on the calling thread itself unless that would wait (another
        process writing); ``fn`` is then called again on the thread, after its first try was rolled back."""
        if self._write_lock is None or not self.writes_on_thread:
            raise DatabaseError(
                "on_writer_thread needs a connected SQLite file database",
                hint="check Database.writes_on_thread first and use session() otherwise",
            )
        for listener in self.writer_thread_listeners:
            listener()
        async with self._write_lock:
            return await self._writer().run(fn, short=short)

    async def transact[T](self, body: Callable[[Connection], T], *, short: bool = True) -> T:
        """Run ``body`` as ONE write transaction, handing it a synchronous SQLAlchemy ``Connection``:
        committed when it returns, rolled back when it raises. ``body`` runs Core statements and nothing
        that awaits. On a SQLite file it runs whole on the writer connection (queued with ``session()``
        writers): a ``short`` body (a few statements: a lone send's) right on the event loop's thread
        unless that would wait, a longer one on the connection's thread (``sqlite_driver.ThreadWriter``);
        on PostgreSQL (and in-memory SQLite) in a session's connection (``run_sync``). For the short
        transactions of every message: much cheaper than a session's ``await``-per-statement on SQLite,
        the same statements on both backends."""
        if self.writes_on_thread and self._write_lock is not None:  # not connected: session() says so
            for listener in self.writer_thread_listeners:
                listener()
            async with self._write_lock:
                return await self._writer().run_core(body, short=short)
        async with self.session() as s:
            conn = await s.connection()
            return await conn.run_sync(body)

    def _writer(self) -> ThreadWriter:
        if self._thread_writer is None:
            from .sqlite_driver import ThreadWriter

            self._thread_writer = ThreadWriter(*self._sqlite_connect_args(), json_serializer=dumps)
        return self._thread_writer

    async def close(self) -> None:
        if self._thread_writer is not None:
            await self._thread_writer.close()
            self._thread_writer = None
        if self._engine is not None:
            await self._engine.dispose()
            if self.is_sqlite:
                from .sqlite_driver import reap_closers

                await reap_closers()
        self._engine = None
        self._sessions = None
        self._read_sessions = None
        self._write_lock = None

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed at the end of the block, rolled back on an exception."""
        if self._sessions is None:
            raise DatabaseError("the database is not connected", hint="call `await db.connect()` first")
        if self._write_lock is None:
            async with self._sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only. On SQLite it starts a deferred transaction outside the writers' queue
        (WAL readers see the last committed state and never wait for a writer); on PostgreSQL it is an
        ordinary transaction. Writing through it is a bug: on SQLite it can fail with "database is locked"."""
        if self._read_sessions is None:
            raise DatabaseError("the database is not connected", hint="call `await db.connect()` first")
        if self._single_connection:  # an in-memory SQLite database: one connection, so one session at a time
            async with self.session() as session:
                yield session
            return
        async with self._read_sessions() as session, session.begin():
            yield session

    # --- schema -------------------------------------------------------------------------------------------

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (alembic upgrade), in one transaction per backend's DDL rules."""
        from alembic import command

        cfg = alembic_config()

        def upgrade(conn: Connection) -> None:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

        await self._run_alembic(upgrade, "migrate")

    async def downgrade(self, revision: str) -> None:
        """Step the schema back to ``revision`` (for tests and operators restoring an older release)."""
        from alembic import command

        cfg = alembic_config()

        def down(conn: Connection) -> None:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)

        await self._run_alembic(down, "downgrade")

    async def _run_alembic(self, fn: Any, what: str) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(fn)
        except SQLAlchemyError as exc:
            raise DatabaseError(
                f"{what} failed on {self.redacted_url}: {_first_line(exc)}",
                hint="the transaction was rolled back; fix the cause and run `msgr-bridge migrate` again",
            ) from exc

    async def current_revision(self) -> str | None:
        """The alembic revision the database is at; None for an empty (never migrated) database.

        Read from alembic's ``alembic_version`` table directly (alembic itself is imported only to
        migrate); several rows (branches, which our linear chain never has) are left to alembic."""

        def read(conn: Connection) -> str | None:
            if not inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            if len(rows) <= 1:
                return rows[0] if rows else None
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(conn).get_current_revision()

        async with self.engine.connect() as conn:
            return await conn.run_sync(read)

    @staticmethod
    def head_revision() -> str:
        head = script_revisions()[1]
        assert head is not None, "the migrations folder has no revisions"
        return head

    async def check_schema(self) -> str:
        """Refuse a schema this code cannot use; return the (current) revision when it can."""
        known, head = script_revisions()
        current = await self.current_revision()
        if current is not None and current not in known:
            raise SchemaTooNewError(
                f"the database at {self.redacted_url} is at schema revision {current!r}, which this "
                f"msgr-bridge does not know (it knows up to {head!r}): this database was migrated by a "
                "newer msgr-bridge",
                hint="upgrade msgr-bridge, or restore a backup taken before the upgrade",
            )
        if current != head:
            state = "empty" if current is None else f"at schema revision {current!r}"
            raise SchemaOutdatedError(
                f"the database at {self.redacted_url} is {state}; this msgr-bridge needs {head!r}",
                hint="run `msgr-bridge migrate` (back up the database first)",
            )
        assert current is not None
        return current


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
