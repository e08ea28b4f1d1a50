"""The event log (the API's resumable stream), quarantine and sync cursors; connector state lives in
``connector_state`` (re-exported here for the callers that import it from this module)."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import EventLogRow, QuarantineRow, SyncStateRow
from ..types import utcnow
from ._base import Repository, dialect_insert, table
from .connector_state import AccountState, ConnectorStateRepo

__all__ = [
    "EVENT_LOG_LOCK",
    "AccountState",
    "ConnectorStateRepo",
    "EventLogRepo",
    "LoggedEvent",
    "NewEvent",
    "QuarantineRepo",
    "QuarantinedPayload",
    "SyncStateRecord",
    "SyncStateRepo",
]

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

    async def append_many(self, session: AsyncSession, events: Sequence[NewEvent]) -> builtins.list[int]:
        """Append in order, in one statement; returns the sequence numbers in input order."""
        if not events:
            return []
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            await session.execute(select(func.pg_advisory_xact_lock(EVENT_LOG_LOCK)))
        tbl = table(EventLogRow)
        now = utcnow()
        rows = [
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
        if dialect == "sqlite":
            # SQLAlchemy cannot promise RETURNING order on SQLite, so with sort_by_parameter_order it falls
            # back to one INSERT per row. SQLite's writers are serialized and rowids of one multi-row
            # INSERT are handed out in VALUES order, so the sorted seqs are the input order.
            plain = tbl.insert().returning(tbl.c.seq)
            return sorted(row.seq for row in (await session.execute(plain, rows)).all())
        stmt = tbl.insert().returning(tbl.c.seq, sort_by_parameter_order=True)
        return [row.seq for row in (await session.execute(stmt, rows)).all()]

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


@dataclass(frozen=True, slots=True)
class QuarantinedPayload:
    id: int
    network: str
    account_id: str | None
    payload: Mapping[str, Any]
    error: str
    created_at: datetime


class QuarantineRepo(Repository):
    """Payloads that failed conversion. The caller redacts secrets before ``add``."""

    async def add(
        self,
        network: str,
        account_id: str | None,
        payload: Mapping[str, Any],
        error: str,
        *,
        session: AsyncSession | None = None,
    ) -> int:
        # Round-trip through JSON so a payload with bytes or datetimes is stored, not refused mid-pipeline.
        safe = json.loads(json.dumps(dict(payload), default=repr))
        tbl = table(QuarantineRow)
        stmt = tbl.insert().values(
            network=network, account_id=account_id, payload=safe, error=error, created_at=utcnow()
        )
        async with self._tx(session) as s:
            return int((await s.execute(stmt.returning(tbl.c.id))).scalar_one())

    async def list(
        self, *, network: str | None = None, limit: int = 100, session: AsyncSession | None = None
    ) -> builtins.list[QuarantinedPayload]:
        stmt = select(QuarantineRow).order_by(QuarantineRow.id.desc()).limit(limit)
        if network is not None:
            stmt = stmt.where(QuarantineRow.network == network)
        async with self._read(session) as s:
            return [
                QuarantinedPayload(r.id, r.network, r.account_id, r.payload, r.error, r.created_at)
                for r in (await s.scalars(stmt)).all()
            ]

    async def count(self, *, network: str | None = None, session: AsyncSession | None = None) -> int:
        stmt = select(func.count()).select_from(QuarantineRow)
        if network is not None:
            stmt = stmt.where(QuarantineRow.network == network)
        async with self._read(session) as s:
            return int(await s.scalar(stmt) or 0)


@dataclass(frozen=True, slots=True)
class SyncStateRecord:
    account_id: str
    cursor: str | None
    last_sync_at: datetime | None
    last_error: str | None


class SyncStateRepo(Repository):
    async def get(self, account_id: str, *, session: AsyncSession | None = None) -> SyncStateRecord | None:
        async with self._tx(session) as s:
            row = await s.get(SyncStateRow, account_id)
            if row is None:
                return None
            return SyncStateRecord(row.account_id, row.cursor, row.last_sync_at, row.last_error)

    async def set_cursor(
        self,
        account_id: str,
        cursor: str | None,
        *,
        at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Record a successful sync: the cursor to pass back next time; clears the last error."""
        at = at or utcnow()
        await self._upsert(account_id, {"cursor": cursor, "last_sync_at": at, "last_error": None}, session)

    async def set_error(self, account_id: str, error: str, *, session: AsyncSession | None = None) -> None:
        """Record a failed sync; the cursor stays where it was."""
        await self._upsert(account_id, {"last_error": error}, session)

    async def _upsert(self, account_id: str, values: dict[str, Any], session: AsyncSession | None) -> None:
        tbl = table(SyncStateRow)
        values = {**values, "updated_at": utcnow()}
        async with self._tx(session) as s:
            stmt = dialect_insert(s, tbl).values(account_id=account_id, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[tbl.c.account_id], set_={k: stmt.excluded[k] for k in values}
            )
            await s.execute(stmt)
