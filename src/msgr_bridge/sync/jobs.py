"""Sync jobs: on connect, on reconnect and every ``[sync] interval_s`` per account.

A sync asks the connector for a ``SyncSnapshot`` from the stored cursor, merges its entities (``diff``),
runs its history through the inbound pipeline (so dedupe makes catch-up idempotent) and only then stores the
new cursor: a crash in between repeats the catch-up, which dedupe turns into no-ops, and loses nothing.

Connected but deaf: a periodic sync of a connection that has been up for a while should find nothing new.
When it stores messages that are older than ``deaf_grace_s`` (they should have arrived live), the
connection is declared deaf and the supervisor reconnects it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import anyio
import structlog

from ..connectors.protocol import Connector
from ..errors import BridgeError
from ..inbound.pipeline import InboundPipeline
from ..inbound.sink import RawInbound
from ..schema import Account, Message, utcnow
from ..store.db import Database
from ..store.repos.sync_state import SyncStateRepo
from .diff import DiffReport, SnapshotMerger

log = structlog.get_logger("msgr_bridge.sync")

HISTORY_CHUNK = 512


@dataclass(frozen=True, slots=True)
class SyncReport:
    account_id: str
    diff: DiffReport
    history: int
    stored: int
    late: int
    """Messages stored by this sync that are older than the deaf grace period."""
    cursor: str | None
    deaf: bool = False


class SyncJob:
    def __init__(
        self,
        db: Database,
        pipeline: InboundPipeline,
        *,
        reconnect: Callable[[str, str], None] | None = None,
        deaf_grace_s: float = 120.0,
    ) -> None:
        self.db = db
        self.pipeline = pipeline
        self.merger = SnapshotMerger(db)
        self.cursors = SyncStateRepo(db)
        self.reconnect = reconnect
        self.deaf_grace_s = deaf_grace_s
        self.last_ok: dict[str, float] = {}
        """Account id -> when (``time.time()``) its last sync succeeded (``msgr_sync_lag_seconds``)."""
        self.last_deaf: dict[str, float] = {}
        """Account id -> when (``time.monotonic()``) a periodic sync last found it deaf (``deaf`` alerts)."""

    async def run_once(self, account: Account, connector: Connector, *, periodic: bool = False) -> SyncReport:
        record = await self.cursors.get(account.id)
        cursor = record.cursor if record else None
        try:
            snapshot = await connector.sync_state(cursor)
        except BridgeError as exc:
            await self.cursors.set_error(account.id, exc.message)
            raise
        async with self.db.session() as session:
            diff = await self.merger.merge(session, account.id, snapshot)
        stored = late = 0
        cutoff = utcnow() - timedelta(seconds=self.deaf_grace_s)
        history = list(snapshot.history)
        for start in range(0, len(history), HISTORY_CHUNK):
            items = [RawInbound(account, p, source="sync") for p in history[start : start + HISTORY_CHUNK]]
            for s in await self.pipeline.process(items):
                if s.outcome == "created" and isinstance(s.event, Message):
                    stored += 1
                    late += s.event.timestamp < cutoff
        await self.cursors.set_cursor(account.id, snapshot.cursor)
        self.last_ok[account.id] = time.time()
        deaf = periodic and late > 0
        if deaf:
            self.last_deaf[account.id] = time.monotonic()
        report = SyncReport(account.id, diff, len(history), stored, late, snapshot.cursor, deaf)
        log.info(
            "sync.done",
            account=account.id,
            periodic=periodic,
            history=len(history),
            stored=stored,
            changed=diff.changed,
            deaf=deaf,
        )
        if deaf and self.reconnect is not None:
            self.reconnect(
                account.id, f"connected but deaf: sync found {late} message(s) that never arrived live"
            )
        return report

    async def run_periodic(
        self, account: Account, connector: Connector, interval_s: float, is_connected: Callable[[], bool]
    ) -> None:
        """Sync every ``interval_s`` while the account is connected; errors are logged, never fatal."""
        while True:
            await anyio.sleep(interval_s)
            if not is_connected():
                continue
            try:
                await self.run_once(account, connector, periodic=True)
            except Exception as exc:
                log.warning("sync.failed", account=account.id, error=str(exc))
