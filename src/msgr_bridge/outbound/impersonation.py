"""Impersonation: which linked account (and which live connector) may speak for a user, and whether now.

A request names the account to send through. ``Impersonation.resolve`` checks the permission scopes:

* the account exists and belongs to the request's tenant;
* when the account is owned by a user (``bridge_accounts.user_id``), only that user may speak through it
  (an account without an owner is a shared, tenant-wide account: any user of the tenant may use it);

and reports the account's connector and whether it is connected. A request for an account that is not
connected is still accepted and queued: the delivery worker leaves it waiting (without using up its
attempts) until the supervisor reports the account connected again.

Credentials never pass through here. The connector was built by the supervisor with a ``ScopedSecrets``
handle for exactly its own account, and already holds its session; impersonation hands the delivery worker
that connector, not secrets, so no raw credential ever travels through the outbound path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..connectors.protocol import Connector
from ..errors import ImpersonationDenied
from ..schema import Capabilities, ConnectionState
from ..store.db import Database
from ..store.repos.accounts import AccountRecord, AccountRepo


class ConnectorDirectory(Protocol):
    """Where the running connectors are. ``connectors.supervisor.Supervisor`` satisfies it."""

    def connector(self, account_id: str) -> Connector | None: ...

    def state(self, account_id: str) -> ConnectionState: ...


@dataclass(frozen=True, slots=True)
class Speaker:
    """The account that speaks, its connector (None while not running) and its connection state."""

    account: AccountRecord
    connector: Connector | None
    state: ConnectionState

    @property
    def ready(self) -> bool:
        return self.connector is not None and self.state is ConnectionState.CONNECTED

    def capabilities(self, conversation_id: str) -> Capabilities | None:
        """The conversation's capabilities from the live connector, else what was stored when the account
        was linked; None when neither is known (the check then happens at delivery time)."""
        if self.connector is not None:
            return self.connector.conversation_capabilities(conversation_id)
        if self.account.capabilities:
            return Capabilities.model_validate(dict(self.account.capabilities))
        return None

    @property
    def dedupes_txn_id(self) -> bool:
        """Whether the network itself drops a second send with the same transaction id (Matrix's
        ``PUT /send/{txnId}``): ``Capabilities.dedupes_txn_id`` (or a connector class attribute
        ``dedupes_txn_id = True``)."""
        if self.connector is None:
            return False
        return self.connector.capabilities.dedupes_txn_id or bool(
            getattr(type(self.connector), "dedupes_txn_id", False)
        )

    @property
    def echoes_own_sends(self) -> bool:
        """Whether our own sends come back inbound with their transaction id (``Capabilities``)."""
        return self.connector is not None and self.connector.capabilities.echoes_own_sends


class Impersonation:
    """Resolves speakers. Account records are cached by id (network and tenant of an id never change;
    the owner is re-read when the cache is cleared, e.g. after an unlink: ``forget(account_id)``)."""

    def __init__(self, db: Database, directory: ConnectorDirectory) -> None:
        self.accounts = AccountRepo(db)
        self.directory = directory
        self._cache: dict[str, AccountRecord] = {}

    async def account(self, account_id: str) -> AccountRecord | None:
        record = self._cache.get(account_id)
        if record is None:
            record = await self.accounts.get(account_id)
            if record is not None:
                self._cache[account_id] = record
        return record

    def forget(self, account_id: str) -> None:
        self._cache.pop(account_id, None)

    async def resolve(self, tenant: str, user: str | None, account_id: str) -> Speaker:
        """The speaker for ``user`` of ``tenant`` through ``account_id``, or ``ImpersonationDenied``."""
        record = await self.account(account_id)
        if record is None or record.tenant != tenant:
            # Same answer for "no such account" and "another tenant's account": no probing across tenants.
            raise ImpersonationDenied(
                f"account {account_id!r} is not a linked account of tenant {tenant!r}",
                hint="list the tenant's accounts (msgr-bridge accounts list) and link the account first",
            )
        if user is not None and record.user_id is not None and record.user_id != user:
            raise ImpersonationDenied(
                f"user {user!r} may not send through account {account_id!r}, which belongs to another user",
                hint="send through one of your own linked accounts, or a shared (ownerless) account",
            )
        return self.speaker(record)

    def speaker(self, record: AccountRecord) -> Speaker:
        """The live view of an already authorised account (the delivery worker's path)."""
        return Speaker(record, self.directory.connector(record.id), self.directory.state(record.id))


class StaticDirectory:
    """A fixed ``ConnectorDirectory``: connectors built and connected by the caller (benchmarks, scripts
    and single-account tools that run without a supervisor). Every listed connector counts as connected."""

    def __init__(self, connectors: dict[str, Connector] | None = None) -> None:
        self.connectors: dict[str, Connector] = dict(connectors or {})

    def connector(self, account_id: str) -> Connector | None:
        return self.connectors.get(account_id)

    def state(self, account_id: str) -> ConnectionState:
        return ConnectionState.CONNECTED if account_id in self.connectors else ConnectionState.STOPPED
