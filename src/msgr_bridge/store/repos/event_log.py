"""The event log: every stored change in commit order, the resumable cursor of the API's event stream."""

from __future__ import annotations

import builtins
import functools
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import EventLogRow
from ..types import utcnow
from ._base import Repository, in_session, table
from .pg_bulk import arrays, unnest_insert

EVENT_LOG_LOCK = 0x6D73_6772_6576  # "msgrev": the advisory lock that orders event-log commits


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    seq: int
    tenant: str
    account_id: str | None
    conversation_id: str | None
    kind: str
    payload: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One entry for ``EventLogRepo.append_many``."""

    tenant: str
    account_id: str | None
    conversation_id: str | None
    kind: str
    payload: Mapping[str, Any]


LOG_COLUMNS = ("tenant", "account_id", "conversation_id", "kind", "payload", "created_at")


def logged_entries(
    events: Sequence[NewEvent], seqs: Sequence[int], now: datetime
) -> builtins.list[LoggedEvent]:
    """``events`` as ``append_many(events, now=now)`` wrote them, with its ``seqs``: what a notification
    carries so that the event stream need not read the log back."""
    return [
        LoggedEvent(seq, e.tenant, e.account_id, e.conversation_id, e.kind, e.payload, now)
        for e, seq in zip(events, seqs, strict=True)
    ]


def append_many_in(conn: Connection, events: Sequence[NewEvent], now: datetime) -> builtins.list[int]:
    """``EventLogRepo.append_many`` on a synchronous connection (``Database.transact``)."""
    if not events:
        return []
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(EVENT_LOG_LOCK)))
    tbl = table(EventLogRow)
    rows = log_rows(events, now)
    raw = conn.connection.driver_connection
    if isinstance(raw, sqlite3.Connection):  # on SQLite's writer thread: the statement compiled once
        from .message_inserts_thread import statements

        insert = statements(conn.dialect).log
        return [cast(int, insert.insert(raw, row)) for row in rows]
    if dialect == "sqlite":
        # SQLAlchemy cannot promise RETURNING order on SQLite, so with sort_by_parameter_order it falls
        # back to one INSERT per row. SQLite's writers are serialized and rowids of one multi-row
        # INSERT are handed out in VALUES order, so the sorted seqs are the input order.
        return sorted(row.seq for row in conn.execute(_SQLITE_APPEND, rows).all())
    # One array per column (``pg_bulk``), inserted in input order: the seqs, drawn in that order and
    # appended under the advisory lock, sorted are the input order.
    return sorted(row.seq for row in conn.execute(_pg_append(), arrays(tbl, LOG_COLUMNS, rows)).all())


def log_rows(events: Sequence[NewEvent], now: datetime) -> builtins.list[dict[str, Any]]:
    """The ``event_log`` rows of ``events``, all stamped ``now`` (one transaction, one time)."""
    return [
        {
            "tenant": e.tenant,
            "account_id": e.account_id,
            "conversation_id": e.conversation_id,
            "kind": e.kind,
            "payload": dict(e.payload),
            "created_at": now,
        }
        for e in events
    ]


_SQLITE_APPEND = table(EventLogRow).insert().returning(table(EventLogRow).c.seq)


@functools.cache
def _pg_append() -> Any:
    """Built on the first append on PostgreSQL (``pg_bulk``: SQLite never loads that dialect)."""
    return unnest_insert(table(EventLogRow), LOG_COLUMNS, ordered=True).returning(table(EventLogRow).c.seq)


class EventLogRepo(Repository):
    """Every stored canonical event, in commit order per writer. ``seq`` is the API stream's resume cursor.

    On PostgreSQL, sequence numbers are handed out before commit, so two concurrent writers (the inbound
    pipeline and the outbound service) could commit out of ``seq`` order, and a reader resuming from a
    ``seq`` could skip the one that committed late. ``append_many`` therefore takes a transaction-scoped
    advisory lock first: appends are serialized until their transactions commit, so commit order is ``seq``
    order. (SQLite transactions are serialized already: ``BEGIN IMMEDIATE``.) Append as late in a
    transaction as possible, to hold the lock briefly.
    """

    async def append(
        self,
        session: AsyncSession,
        tenant: str,
        account_id: str | None,
        conversation_id: str | None,
        kind: str,
        payload: Mapping[str, Any],
    ) -> int:
        seqs = await self.append_many(session, [NewEvent(tenant, account_id, conversation_id, kind, payload)])
        return seqs[0]

    async def append_many(
        self, session: AsyncSession, events: Sequence[NewEvent], *, now: datetime | None = None
    ) -> builtins.list[int]:
        """Append in order, in one statement, stamped ``now`` (default: the current time); returns the
        sequence numbers in input order."""
        if not events:
            return []
        return await in_session(session, lambda conn: append_many_in(conn, events, now or utcnow()))

    async def read_after(
        self,
        seq: int,
        limit: int = 500,
        *,
        tenant: str | None = None,
        session: AsyncSession | None = None,
    ) -> builtins.list[LoggedEvent]:
        """Events with ``seq`` greater than the given one, oldest first."""
        stmt = select(EventLogRow).where(EventLogRow.seq > seq).order_by(EventLogRow.seq).limit(limit)
        if tenant is not None:
            stmt = stmt.where(EventLogRow.tenant == tenant)
        async with self._read(session) as s:
            return [
                LoggedEvent(r.seq, r.tenant, r.account_id, r.conversation_id, r.kind, r.payload, r.created_at)
                for r in (await s.scalars(stmt)).all()
            ]

    async def last_seq(self, *, session: AsyncSession | None = None) -> int:
        async with self._read(session) as s:
            return int(await s.scalar(select(func.coalesce(func.max(EventLogRow.seq), 0))) or 0)
