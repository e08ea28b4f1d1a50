"""The retention job: what the bridge keeps on disk and in the database is bounded by ``[retention]``.

Each run removes, in bounded batches:

* share links that expired, were revoked or used up their views, and their stored files (the file first:
  when the storage backend fails, the link stays and the next run tries again);
* stored files that no share link points at once they are ``orphan_min_age_s`` old (an upload that never
  became a link, a send refused after its file was stored, a crash in between; local storage only, since
  the other backends cannot be listed cheaply);
* when configured (off by default): messages older than ``messages_max_age_days`` (their reactions and
  account links go with them) and quarantined payloads older than ``quarantine_max_age_days``.

``Bridge`` runs it every ``interval_s`` seconds in its task group; a failed run (the database is away) is
logged and retried at the next interval, never ending the process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog
from sqlalchemy import delete, or_, select

from .store.db import Database
from .store.models import MessageRow, QuarantineRow, ShareLink
from .store.types import utcnow

log = structlog.get_logger("msgr_bridge.retention")
BATCH = 500


@dataclass
class RetentionReport:
    share_links: int = 0
    files: int = 0
    messages: int = 0
    quarantined: int = 0


class RetentionJob:
    def __init__(
        self,
        db: Database,
        storage: Any,
        settings: Any,
        *,
        tenant: str,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.storage, self.settings, self.tenant, self.now = db, storage, settings, tenant, now

    async def run_periodic(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if any(vars(report).values()):
                    log.info("retention.removed", **vars(report))
            except Exception as exc:  # the database or the storage is away: try again next time
                log.error("retention.failed", error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(self.settings.interval_s)

    async def run_once(self) -> RetentionReport:
        report = RetentionReport()
        if self.settings.share_links:
            report.share_links, report.files = await self._share_links()
        report.files += await self._orphans()
        if self.settings.messages_max_age_days is not None:
            cutoff = self.now() - timedelta(days=self.settings.messages_max_age_days)
            report.messages = await self._delete_batches(MessageRow.id, MessageRow.sent_at < cutoff)
        if self.settings.quarantine_max_age_days is not None:
            cutoff = self.now() - timedelta(days=self.settings.quarantine_max_age_days)
            report.quarantined = await self._delete_batches(
                QuarantineRow.id, QuarantineRow.created_at < cutoff
            )
        return report

    async def _share_links(self) -> tuple[int, int]:
        now = self.now()
        gone = or_(
            ShareLink.expires_at <= now,
            ShareLink.revoked_at.is_not(None),
            ShareLink.views >= ShareLink.max_views,
        )
        links = files = 0
        while True:
            async with self.db.read() as s:
                rows = (
                    await s.execute(
                        select(ShareLink.id, ShareLink.storage_key)
                        .where(ShareLink.tenant == self.tenant, gone)
                        .limit(BATCH)
                    )
                ).all()
            for _, key in rows:
                if key:
                    await self.storage.delete(key)
                    files += 1
            if rows:
                async with self.db.session() as s:
                    await s.execute(
                        delete(ShareLink)
                        .where(ShareLink.id.in_([r.id for r in rows]))
                        .execution_options(synchronize_session=False)
                    )
            links += len(rows)
            if len(rows) < BATCH:
                return links, files

    async def _orphans(self) -> int:
        keys_older_than = getattr(self.storage, "keys_older_than", None)
        if keys_older_than is None:
            return 0
        removed = 0
        old: list[str] = keys_older_than(self.settings.orphan_min_age_s)
        for start in range(0, len(old), BATCH):
            chunk = old[start : start + BATCH]
            async with self.db.read() as s:
                linked = set(
                    (
                        await s.scalars(select(ShareLink.storage_key).where(ShareLink.storage_key.in_(chunk)))
                    ).all()
                )
            for key in chunk:
                if key not in linked:
                    await self.storage.delete(key)
                    removed += 1
        return removed

    async def _delete_batches(self, id_column: Any, condition: Any) -> int:
        removed = 0
        while True:
            async with self.db.session() as s:
                ids = list((await s.scalars(select(id_column).where(condition).limit(BATCH))).all())
                if ids:
                    await s.execute(
                        delete(id_column.class_)
                        .where(id_column.in_(ids))
                        .execution_options(synchronize_session=False)
                    )
            removed += len(ids)
            if len(ids) < BATCH:
                return removed
