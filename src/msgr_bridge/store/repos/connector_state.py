"""Connector state: namespaced JSON values per account, with per-key expiry and bounded maps.

``ConnectorStateRepo`` is the table's repository; ``AccountState`` (one account, one namespace) is what a
connector's context gets as ``state`` and implements ``msgr_bridge.sdk.state.KeyedStateStore``. Every call
is one transaction of its own: state is written key by key, as it changes.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...sdk.state import (
    check_bound,
    check_key,
    check_limit,
    check_ttl,
    check_value,
    map_namespace,
)
from ..db import Database
from ..models import ConnectorStateMap, ConnectorStateRow
from ..types import utcnow
from ._base import Repository, dialect_insert, table

Row = ConnectorStateRow


def _in(account_id: str, namespace: str) -> Any:
    return and_(Row.account_id == account_id, Row.namespace == namespace)


def _alive(now: datetime) -> Any:
    return or_(Row.expires_at.is_(None), Row.expires_at > now)


class ConnectorStateRepo(Repository):
    """Namespaced JSON values per account: plugins keep their state here instead of owning tables."""

    async def get(
        self,
        account_id: str,
        namespace: str,
        key: str,
        default: Any = None,
        *,
        now: datetime | None = None,
        touch: bool = False,
        session: AsyncSession | None = None,
    ) -> Any:
        """The value, or ``default`` when absent or expired. ``touch`` marks the key as just used."""
        now = now or utcnow()
        where = and_(_in(account_id, namespace), Row.key == key, _alive(now))
        async with self._tx(session) as s:
            row = (await s.execute(select(Row.value).where(where))).first()
            if row is None:
                return default
            if touch:
                seq = await self._next_seq(s, account_id, namespace)
                await s.execute(update(Row).where(where).values(used_seq=seq))
            return row[0]

    async def set(
        self,
        account_id: str,
        namespace: str,
        key: str,
        value: Any,
        *,
        expires_at: datetime | None = None,
        max_entries: int | None = None,
        now: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> int:
        """Store a JSON-serialisable value (a ``TypeError`` names the key when it is not). With
        ``max_entries`` the namespace is a bounded map: the least recently used keys beyond the bound are
        deleted and counted. Returns how many keys were dropped."""
        check_value(f"{namespace}/{key}", value)
        now = now or utcnow()
        tbl = table(Row)
        async with self._tx(session) as s:
            if max_entries is not None and s.get_bind().dialect.name == "postgresql":
                # one writer per map at a time, so concurrent writes keep the bound exactly (and drop each
                # entry once); SQLite serializes its writers already
                key_of_map = func.hashtext(f"{account_id}\x1f{namespace}")
                await s.execute(select(func.pg_advisory_xact_lock(key_of_map)))
            await s.execute(
                delete(Row).where(
                    _in(account_id, namespace), Row.expires_at.is_not(None), Row.expires_at <= now
                )
            )
            values = {
                "value": value,
                "updated_at": now,
                "expires_at": expires_at,
                "used_seq": await self._next_seq(s, account_id, namespace),
            }
            stmt = dialect_insert(s, tbl).values(
                account_id=account_id, namespace=namespace, key=key, **values
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[tbl.c.account_id, tbl.c.namespace, tbl.c.key],
                set_={k: stmt.excluded[k] for k in values},
            )
            await s.execute(stmt)
            if max_entries is None:
                return 0
            return await self._evict(s, account_id, namespace, max_entries, now)

    async def _next_seq(self, s: AsyncSession, account_id: str, namespace: str) -> int:
        stmt = select(func.coalesce(func.max(Row.used_seq), 0)).where(_in(account_id, namespace))
        return int(await s.scalar(stmt) or 0) + 1

    async def _evict(
        self, s: AsyncSession, account_id: str, namespace: str, bound: int, now: datetime
    ) -> int:
        count = int(
            await s.scalar(select(func.count()).select_from(Row).where(_in(account_id, namespace))) or 0
        )
        excess = count - bound
        if excess > 0:
            oldest = (
                select(Row.key)
                .where(_in(account_id, namespace))
                .order_by(Row.used_seq, Row.key)
                .limit(excess)
            )
            keys = list((await s.scalars(oldest)).all())
            await s.execute(delete(Row).where(_in(account_id, namespace), Row.key.in_(keys)))
        maps = table(ConnectorStateMap)
        dropped = max(excess, 0)
        stmt = dialect_insert(s, maps).values(
            account_id=account_id, namespace=namespace, max_entries=bound, dropped=dropped, updated_at=now
        )
        # The row is written only when something changes (a first use, a new bound, a drop).
        stmt = stmt.on_conflict_do_update(
            index_elements=[maps.c.account_id, maps.c.namespace],
            set_={"dropped": maps.c.dropped + dropped, "max_entries": bound, "updated_at": now},
            where=or_(maps.c.max_entries != bound, stmt.excluded.dropped > 0),
        )
        await s.execute(stmt)
        return dropped

    async def delete(
        self, account_id: str, namespace: str, key: str, *, session: AsyncSession | None = None
    ) -> bool:
        stmt = delete(Row).where(_in(account_id, namespace), Row.key == key).returning(Row.key)
        async with self._tx(session) as s:
            return (await s.execute(stmt)).first() is not None

    async def items(
        self,
        account_id: str,
        namespace: str,
        *,
        prefix: str = "",
        limit: int | None = None,
        now: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> dict[str, Any]:
        """Live keys (not expired) starting with ``prefix``, in key order."""
        stmt = (
            select(Row.key, Row.value)
            .where(_in(account_id, namespace), _alive(now or utcnow()))
            .order_by(Row.key)
        )
        if prefix:
            # substr, not LIKE: SQLite's LIKE ignores case, and a prefix is matched exactly
            stmt = stmt.where(func.substr(Row.key, 1, len(prefix)) == prefix)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read(session) as s:
            return {k: v for k, v in (await s.execute(stmt))}

    async def count(
        self,
        account_id: str,
        namespace: str,
        *,
        now: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> int:
        stmt = (
            select(func.count()).select_from(Row).where(_in(account_id, namespace), _alive(now or utcnow()))
        )
        async with self._read(session) as s:
            return int(await s.scalar(stmt) or 0)

    async def dropped(self, account_id: str, namespace: str, *, session: AsyncSession | None = None) -> int:
        stmt = select(ConnectorStateMap.dropped).where(
            ConnectorStateMap.account_id == account_id, ConnectorStateMap.namespace == namespace
        )
        async with self._read(session) as s:
            return int(await s.scalar(stmt) or 0)


Now = Callable[[], datetime]


class _Keys:
    """The keyed operations on one (account, namespace), shared by ``AccountState`` and its maps."""

    def __init__(self, repo: ConnectorStateRepo, account_id: str, namespace: str, now: Now) -> None:
        self._repo, self.account_id, self.namespace, self._now = repo, account_id, namespace, now

    def _expiry(self, ttl_s: float | None) -> datetime | None:
        return None if check_ttl(ttl_s) is None else self._now() + timedelta(seconds=ttl_s or 0)

    async def delete(self, key: str) -> bool:
        return await self._repo.delete(self.account_id, self.namespace, check_key(key))

    async def list(self, prefix: str = "", *, limit: int = 1000) -> builtins.dict[str, Any]:
        return await self._repo.items(
            self.account_id, self.namespace, prefix=prefix, limit=check_limit(limit), now=self._now()
        )


class AccountStateMap(_Keys):
    """A bounded map (``msgr_bridge.sdk.state.BoundedMap``) stored key by key."""

    def __init__(
        self, repo: ConnectorStateRepo, account_id: str, namespace: str, name: str, max_entries: int, now: Now
    ) -> None:
        check_bound(name, max_entries)
        super().__init__(repo, account_id, map_namespace(namespace, name), now)
        self.name, self.max_entries = name, max_entries

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._repo.get(
            self.account_id, self.namespace, check_key(key), default, now=self._now(), touch=True
        )

    async def set(self, key: str, value: Any, *, ttl_s: float | None = None) -> None:
        await self._repo.set(
            self.account_id,
            self.namespace,
            check_key(key),
            value,
            expires_at=self._expiry(ttl_s),
            max_entries=self.max_entries,
            now=self._now(),
        )

    async def size(self) -> int:
        return await self._repo.count(self.account_id, self.namespace, now=self._now())

    async def dropped(self) -> int:
        return await self._repo.dropped(self.account_id, self.namespace)


class AccountState(_Keys):
    """``KeyedStateStore`` for one account and namespace: what a connector's context gets as ``state``.

    ``now`` gives the current time for TTLs (the connector context's clock; tests pass their own)."""

    def __init__(self, db: Database, account_id: str, namespace: str, *, now: Now = utcnow) -> None:
        super().__init__(ConnectorStateRepo(db), account_id, namespace, now)

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._repo.get(self.account_id, self.namespace, check_key(key), default, now=self._now())

    async def set(self, key: str, value: Any, *, ttl_s: float | None = None) -> None:
        await self._repo.set(
            self.account_id,
            self.namespace,
            check_key(key),
            value,
            expires_at=self._expiry(ttl_s),
            now=self._now(),
        )

    def map(self, name: str, *, max_entries: int) -> AccountStateMap:
        return AccountStateMap(self._repo, self.account_id, self.namespace, name, max_entries, self._now)
