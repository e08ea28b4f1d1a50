"""What every repository shares: dialect-specific INSERT, optional transactions, ids and chunking."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database
from ..models import Base

MAX_BIND_PARAMS = 30_000
"""Below both PostgreSQL's 32767 and SQLite's 32766 bound-parameter limits for one statement."""


def table(model: type[Base]) -> Table:
    """The Core table of a model (for bulk statements that skip the ORM's per-row work)."""
    return cast(Table, model.__table__)


def dialect_insert(session: AsyncSession | Connection, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the session's (or connection's) backend."""
    name = session.dialect.name if isinstance(session, Connection) else session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql  # here: ~2 MB a SQLite bridge never needs (issue 19)

        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"msgr-bridge supports SQLite and PostgreSQL, not {name}")


async def in_session[T](session: AsyncSession, body: Callable[[Connection], T]) -> T:
    """Run a synchronous ``body`` (written for ``Database.transact``) in ``session``'s transaction."""
    return await session.run_sync(lambda sync: body(sync.connection()))


def chunks[T](items: Sequence[T], columns: int) -> Iterator[Sequence[T]]:
    """Split a multi-row statement so it stays under the bound-parameter limit."""
    size = max(1, MAX_BIND_PARAMS // max(1, columns))
    for start in range(0, len(items), size):
        yield items[start : start + size]


_counter = itertools.count()


def new_id(prefix: str) -> str:
    """A unique id that sorts by creation time within a process: ``<prefix>_<ns hex><counter><random>``."""
    return f"{prefix}_{time.time_ns():016x}{next(_counter) % 0xFFFF:04x}{os.urandom(4).hex()}"


class Repository:
    """Base of the repositories. Methods take ``session=`` to join the caller's transaction; without it they
    open and commit their own. Nothing returned holds a session: results are schema objects or dataclasses."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _transact[T](self, session: AsyncSession | None, body: Callable[[Connection], T]) -> T:
        """``body`` (statements on a synchronous connection) in ``session``'s transaction, or as a
        transaction of its own (``Database.transact``: on SQLite whole on the writer's thread)."""
        if session is None:
            return await self.db.transact(body)
        return await in_session(session, body)

    @asynccontextmanager
    async def _tx(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
            return
        async with self.db.session() as own:
            yield own

    @asynccontextmanager
    async def _read(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        """``_tx`` for methods that only read: without a session, a ``Database.read()`` one (on SQLite it
        does not queue behind writers)."""
        if session is not None:
            yield session
            return
        async with self.db.read() as own:
            yield own
