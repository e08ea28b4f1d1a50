"""The secrets handle a connector receives: bound to one account, it can read nothing else.

``ScopedSecrets(store, account_id)`` implements ``msgr_bridge.connectors.protocol.AccountSecrets``. The
account id is fixed when the supervisor builds the connector's context; every key is checked to be a plain
name (no ``/``, no ``..``), so ``"../other-account/password"`` is refused with ``CredentialAccessDenied``
before any backend sees it.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from .base import CredentialStore, check_name

_log = structlog.get_logger("msgr_bridge.credentials")


class ScopedSecrets:
    """``AccountSecrets`` for exactly one account of a ``CredentialStore``."""

    __slots__ = ("_account_id", "_store")

    def __init__(self, store: CredentialStore, account_id: str) -> None:
        self._store = store
        self._account_id = check_name("account id", account_id)

    @property
    def account_id(self) -> str:
        return self._account_id

    def __repr__(self) -> str:
        return f"ScopedSecrets(account_id={self._account_id!r})"

    async def get(self, key: str) -> str:
        value = await self._store.get(self._account_id, check_name("secret key", key))
        _log.debug("credential.read", account_id=self._account_id, key=key)
        return value

    async def get_optional(self, key: str) -> str | None:
        return await self._store.get_optional(self._account_id, check_name("secret key", key))

    async def put(self, key: str, value: str, *, expires_at: datetime | None = None) -> None:
        await self._store.put(self._account_id, check_name("secret key", key), value, expires_at=expires_at)

    async def delete(self, key: str) -> None:
        await self._store.delete(self._account_id, check_name("secret key", key))
