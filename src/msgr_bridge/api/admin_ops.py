"""The owner's operations for ``routes/admin.py`` (``services.OwnerAdmin``): this tenant's API tokens
(create, list, revoke) and the audit log's check; each change is audited in the same transaction, with the
caller as actor."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ..errors import TokenUnknown
from ..store import audit
from ..store.tokens import NewToken, TokenInfo, TokenStore

if TYPE_CHECKING:
    from ..store.db import Database


class AdminService:
    def __init__(self, db: Database, tenant: str) -> None:
        self._db, self._tenant = db, tenant

    async def tokens(self) -> list[TokenInfo]:
        return await TokenStore(self._db).list(tenant=self._tenant)

    async def create_token(
        self, actor: str, *, name: str, scopes: list[str], ttl: timedelta | None
    ) -> NewToken:
        """Raises ``InvalidScope`` for a scope that does not parse."""
        async with self._db.session() as s:
            new = await TokenStore(self._db).create(
                tenant=self._tenant, name=name, scopes=scopes, ttl=ttl, session=s
            )
            await audit.append(
                s,
                actor,
                "token.create",
                new.info.id,
                {"tenant": self._tenant, "name": name, "scopes": [str(x) for x in new.info.scopes]},
            )
        return new

    async def revoke_token(self, actor: str, token_id: str) -> TokenInfo:
        store = TokenStore(self._db)
        async with self._db.session() as s:
            before = await store.get(token_id, session=s)
            if before.tenant != self._tenant:
                raise TokenUnknown(f"no API token with id {token_id!r}")
            info = await store.revoke(token_id, session=s)
            if before.revoked_at is None:
                await audit.append(
                    s, actor, "token.revoke", info.id, {"tenant": info.tenant, "name": info.name}
                )
        return info

    async def verify_audit(self) -> audit.VerifyReport:
        async with self._db.session() as s:
            return await audit.verify(s)
