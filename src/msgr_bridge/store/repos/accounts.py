"""Tenants, users and linked accounts (``bridge_accounts``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import DatabaseError
from ...schema import Account, Capabilities, ConnectionState
from ..models import BridgeAccount, Tenant, User
from ..types import utcnow
from ._base import Repository, dialect_insert


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A linked account as stored: the canonical ``Account`` plus what only the bridge keeps."""

    id: str
    tenant: str
    network: str
    remote_user_id: str
    display_name: str | None
    state: ConnectionState
    state_reason: str | None = None
    user_id: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    credentials_expire_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_schema(self) -> Account:
        return Account(
            id=self.id,
            tenant=self.tenant,
            network=self.network,
            remote_user_id=self.remote_user_id,
            display_name=self.display_name,
            state=self.state,
        )


def _record(row: BridgeAccount) -> AccountRecord:
    return AccountRecord(
        id=row.id,
        tenant=row.tenant,
        network=row.network,
        remote_user_id=row.remote_user_id,
        display_name=row.display_name,
        state=ConnectionState(row.state),
        state_reason=row.state_reason,
        user_id=row.user_id,
        settings=dict(row.settings or {}),
        capabilities=dict(row.capabilities or {}),
        credentials_expire_at=row.credentials_expire_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class AccountRepo(Repository):
    async def ensure_tenant(
        self, tenant: str, *, name: str | None = None, session: AsyncSession | None = None
    ) -> None:
        async with self._tx(session) as s:
            stmt = dialect_insert(s, Tenant).values(id=tenant, name=name, created_at=utcnow())
            await s.execute(stmt.on_conflict_do_nothing())

    async def ensure_user(
        self, tenant: str, user_id: str, *, name: str | None = None, session: AsyncSession | None = None
    ) -> None:
        async with self._tx(session) as s:
            await self.ensure_tenant(tenant, session=s)
            stmt = dialect_insert(s, User).values(id=user_id, tenant=tenant, name=name, created_at=utcnow())
            await s.execute(stmt.on_conflict_do_nothing())

    async def create(
        self,
        account: Account,
        *,
        user_id: str | None = None,
        settings: Mapping[str, Any] | None = None,
        capabilities: Capabilities | Mapping[str, Any] | None = None,
        session: AsyncSession | None = None,
    ) -> AccountRecord:
        """Store a newly linked account (and its tenant, when new). A taken id is refused."""
        caps = (
            capabilities.model_dump(mode="json") if isinstance(capabilities, Capabilities) else capabilities
        )
        now = utcnow()
        async with self._tx(session) as s:
            await self.ensure_tenant(account.tenant, session=s)
            stmt = (
                dialect_insert(s, BridgeAccount)
                .values(
                    id=account.id,
                    tenant=account.tenant,
                    user_id=user_id,
                    network=account.network,
                    remote_user_id=account.remote_user_id,
                    display_name=account.display_name,
                    settings=dict(settings or {}),
                    capabilities=dict(caps or {}),
                    state=account.state.value,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
                .returning(BridgeAccount.id)
            )
            if (await s.execute(stmt)).scalar_one_or_none() is None:
                raise DatabaseError(
                    f"an account with id {account.id!r} already exists",
                    hint="choose another account id, or delete the existing account first",
                )
            row = await s.get_one(BridgeAccount, account.id)
            return _record(row)

    async def get(self, account_id: str, *, session: AsyncSession | None = None) -> AccountRecord | None:
        async with self._read(session) as s:
            row = await s.get(BridgeAccount, account_id)
            return _record(row) if row is not None else None

    async def list(
        self, tenant: str | None = None, *, network: str | None = None, session: AsyncSession | None = None
    ) -> builtins.list[AccountRecord]:
        stmt = select(BridgeAccount).order_by(BridgeAccount.tenant, BridgeAccount.id)
        if tenant is not None:
            stmt = stmt.where(BridgeAccount.tenant == tenant)
        if network is not None:
            stmt = stmt.where(BridgeAccount.network == network)
        async with self._read(session) as s:
            return [_record(row) for row in (await s.scalars(stmt)).all()]

    async def _update(self, account_id: str, values: dict[str, Any], session: AsyncSession | None) -> bool:
        values["updated_at"] = utcnow()
        async with self._tx(session) as s:
            stmt = update(BridgeAccount).where(BridgeAccount.id == account_id).values(**values)
            result = await s.execute(stmt.returning(BridgeAccount.id))
            return result.scalar_one_or_none() is not None

    async def set_state(
        self,
        account_id: str,
        state: ConnectionState,
        reason: str | None = None,
        *,
        session: AsyncSession | None = None,
    ) -> bool:
        """Record the connection state (and why); False when the account does not exist."""
        return await self._update(account_id, {"state": state.value, "state_reason": reason}, session)

    async def update_settings(
        self,
        account_id: str,
        settings: Mapping[str, Any],
        *,
        merge: bool = True,
        session: AsyncSession | None = None,
    ) -> AccountRecord | None:
        """Replace the non-secret settings, or merge keys into them (``merge=True``)."""
        async with self._tx(session) as s:
            row = await s.get(BridgeAccount, account_id, with_for_update=not self.db.is_sqlite)
            if row is None:
                return None
            row.settings = {**row.settings, **settings} if merge else dict(settings)
            row.updated_at = utcnow()
            await s.flush()
            return _record(row)

    async def set_capabilities(
        self, account_id: str, capabilities: Capabilities, *, session: AsyncSession | None = None
    ) -> bool:
        return await self._update(account_id, {"capabilities": capabilities.model_dump(mode="json")}, session)

    async def set_credentials_expiry(
        self, account_id: str, expires_at: datetime | None, *, session: AsyncSession | None = None
    ) -> bool:
        return await self._update(account_id, {"credentials_expire_at": expires_at}, session)

    async def delete(self, account_id: str, *, session: AsyncSession | None = None) -> bool:
        """Remove the account and everything only it owns (contacts, channels, state, its outbox)."""
        async with self._tx(session) as s:
            stmt = delete(BridgeAccount).where(BridgeAccount.id == account_id).returning(BridgeAccount.id)
            return (await s.execute(stmt)).scalar_one_or_none() is not None
