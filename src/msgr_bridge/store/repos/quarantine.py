"""Quarantined payloads: what could not be converted or stored, kept with the reason for an operator."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import QuarantineRow
from ..types import utcnow
from ._base import Repository, table


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
