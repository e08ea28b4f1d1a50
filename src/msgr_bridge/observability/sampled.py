"""What the bridge looks like right now: read before each scrape (and by the alert evaluator), set as gauges.

Counters are counted where things happen; levels (outbox depth, account states, credential expiry, sync lag,
event-stream clients) are *sampled*: ``Sampler.refresh()`` reads them from the database and the running
parts (a few small queries), at most once per ``min_interval_s``, and sets the gauges of ``Metrics``.

Per-account gauges keep at most ``max_account_series`` accounts, the worst first (longest sync lag,
soonest expiry); how many were left out is ``msgr_account_series_omitted{metric}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select

from ..schema import ConnectionState
from ..store.db import Database
from ..store.models import OutboxRow, QuarantineRow
from ..store.repos.accounts import AccountRecord, AccountRepo
from . import metrics as m

__all__ = ["Sampler", "Snapshot"]


class _Hub(Protocol):
    @property
    def clients(self) -> Any: ...


class _Sync(Protocol):
    last_ok: dict[str, float]
    last_deaf: dict[str, float]


class _Pipeline(Protocol):
    last_live: dict[str, float]


@dataclass
class Snapshot:
    """One reading. Times are seconds; ``None`` where nothing is known yet."""

    at: float
    accounts: list[AccountRecord] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    """Entries by state (queued, sending, dead)."""
    oldest_age_s: float = 0.0
    quarantine_rows: int = 0
    sync_lag_s: dict[str, float] = field(default_factory=dict)
    """Connected accounts: seconds since their last successful sync (or since they were first seen)."""
    connected_for_s: dict[str, float] = field(default_factory=dict)
    """Connected accounts: seconds they have been seen connected (as sampled)."""
    quiet_for_s: dict[str, float] = field(default_factory=dict)
    """Connected accounts: seconds since their last live inbound payload (or since seen connected)."""
    deaf_ago_s: dict[str, float] = field(default_factory=dict)
    """Accounts a periodic sync found deaf: seconds since that verdict."""
    stream_clients: int = 0
    stream_queued: int = 0
    stream_max_queued: int = 0
    stream_lagged: int = 0


class Sampler:
    def __init__(
        self,
        db: Database,
        tenant: str,
        metrics: m.Metrics | None,
        *,
        sync: _Sync | None = None,
        pipeline: _Pipeline | None = None,
        hub: Callable[[], _Hub | None] | None = None,
        max_account_series: int = 200,
        min_interval_s: float = 1.0,
    ) -> None:
        self.db, self.tenant, self.metrics = db, tenant, metrics
        self.accounts = AccountRepo(db)
        self.sync, self.pipeline, self.hub = sync, pipeline, hub
        self.max_account_series = max_account_series
        self.min_interval_s = min_interval_s
        self._seen_connected: dict[str, float] = {}
        self._last: Snapshot | None = None

    async def refresh(self) -> Snapshot:
        """A fresh reading (or the last one, when younger than ``min_interval_s``), set as gauges."""
        now = time.monotonic()
        if self._last is not None and now - self._last.at < self.min_interval_s:
            return self._last
        snap = await self.sample()
        if self.metrics is not None:
            self.export(snap)
        self._last = snap
        return snap

    async def sample(self) -> Snapshot:
        snap = Snapshot(at=time.monotonic())
        snap.accounts = await self.accounts.list(self.tenant)
        async with self.db.read() as s:
            rows = await s.execute(
                select(OutboxRow.state, func.count(), func.min(OutboxRow.created_at))
                .where(OutboxRow.tenant == self.tenant, OutboxRow.state.in_(("queued", "sending", "dead")))
                .group_by(OutboxRow.state)
            )
            oldest: datetime | None = None
            for state, n, first in rows.all():
                snap.outbox[state] = int(n)
                if state != "dead" and first is not None:
                    first = first if first.tzinfo else first.replace(tzinfo=UTC)
                    oldest = first if oldest is None else min(oldest, first)
            snap.quarantine_rows = int(
                (await s.execute(select(func.count()).select_from(QuarantineRow))).scalar_one()
            )
        if oldest is not None:
            snap.oldest_age_s = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        self._per_account(snap)
        self._streams(snap)
        return snap

    def _per_account(self, snap: Snapshot) -> None:
        wall, mono = time.time(), snap.at
        connected = {a.id for a in snap.accounts if a.state == ConnectionState.CONNECTED}
        for gone in set(self._seen_connected) - connected:
            del self._seen_connected[gone]
        last_ok: Mapping[str, float] = self.sync.last_ok if self.sync is not None else {}
        last_live: Mapping[str, float] = self.pipeline.last_live if self.pipeline is not None else {}
        for account_id in connected:
            since = self._seen_connected.setdefault(account_id, mono)
            snap.connected_for_s[account_id] = mono - since
            ok = last_ok.get(account_id)
            snap.sync_lag_s[account_id] = wall - ok if ok is not None else mono - since
            live = last_live.get(account_id)
            snap.quiet_for_s[account_id] = mono - max(live, since) if live is not None else mono - since
        if self.sync is not None:
            snap.deaf_ago_s = {a: mono - t for a, t in self.sync.last_deaf.items()}

    def _streams(self, snap: Snapshot) -> None:
        hub = self.hub() if self.hub is not None else None
        if hub is None:
            return
        clients = list(hub.clients)
        snap.stream_clients = len(clients)
        sizes = [len(c.queue) for c in clients]
        snap.stream_queued = sum(sizes)
        snap.stream_max_queued = max(sizes, default=0)
        snap.stream_lagged = sum(1 for c in clients if c.lagged)

    def export(self, snap: Snapshot) -> None:
        metrics = self.metrics
        assert metrics is not None
        depth = metrics.gauge(m.OUTBOX_DEPTH)
        for state in ("queued", "sending"):
            depth.labels(state=state).set(snap.outbox.get(state, 0))
        metrics.gauge(m.OUTBOX_OLDEST_AGE).set(snap.oldest_age_s)
        metrics.gauge(m.OUTBOX_DEAD).set(snap.outbox.get("dead", 0))
        metrics.gauge(m.QUARANTINE_ROWS).set(snap.quarantine_rows)
        states = metrics.gauge(m.CONNECTOR_ACCOUNTS)
        states.clear()
        counts: dict[tuple[str, str], int] = {}
        for a in snap.accounts:
            key = (a.network, a.state.value)
            counts[key] = counts.get(key, 0) + 1
        for (network, state), n in counts.items():
            states.labels(network=network, state=state).set(n)
        network_of = {a.id: a.network for a in snap.accounts}
        self._bounded(m.SYNC_LAG, snap.sync_lag_s, network_of, worst_first=True)
        now = datetime.now(UTC)
        expiry = {
            a.id: (_aware(a.credentials_expire_at) - now).total_seconds()
            for a in snap.accounts
            if a.credentials_expire_at is not None
        }
        self._bounded(m.CREDENTIAL_EXPIRY, expiry, network_of, worst_first=False)
        metrics.gauge(m.STREAM_CLIENTS).set(snap.stream_clients)
        metrics.gauge(m.STREAM_QUEUED).set(snap.stream_queued)
        metrics.gauge(m.STREAM_MAX_QUEUED).set(snap.stream_max_queued)
        metrics.gauge(m.STREAM_LAGGED).set(snap.stream_lagged)

    def _bounded(
        self, name: str, values: Mapping[str, float], network_of: Mapping[str, str], *, worst_first: bool
    ) -> None:
        assert self.metrics is not None
        gauge = self.metrics.gauge(name)
        gauge.clear()
        ranked = sorted(values.items(), key=lambda kv: -kv[1] if worst_first else kv[1])
        kept = ranked[: self.max_account_series]
        for account_id, value in kept:
            gauge.labels(network=network_of.get(account_id, "unknown"), account=account_id).set(value)
        self.metrics.gauge(m.ACCOUNT_SERIES_OMITTED).labels(metric=name).set(len(ranked) - len(kept))


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
