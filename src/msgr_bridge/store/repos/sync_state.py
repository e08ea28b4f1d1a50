"""Sync cursors: where each account's catch-up resumes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..models import SyncStateRow
from ..types import utcnow
from ._base import Repository, dialect_insert, table


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
