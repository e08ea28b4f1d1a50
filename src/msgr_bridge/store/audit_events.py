"""The audit entries the core writes on its own: credential reads and writes, and configuration changes.

**Credential reads** are audited at the first read of each (account, key) by this process, not at every
read. ``ScopedSecrets.get`` is on the hot path: connectors read their password on every (re)connect and
some read a token per request, and every audit append takes the chain's lock (an advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). Auditing each read would make a reconnect storm a write
storm and bury the rows that matter. What the log has to prove is *which process had access to which
credential*, and the first read per process proves that: a restart records it again, and so does a
relink (a new account id). Writes (``put``: a connector storing a refreshed token) and deletes are rare
and are audited every time. An audit write that fails makes the read fail with ``TransientError`` (fail
closed; the supervisor retries the connection), so no secret is handed out unrecorded.

**Configuration changes**: at startup the bridge hashes its effective configuration (the redacted form
``msgr-bridge config check`` prints, so no secret goes into the hash) and appends ``config.changed`` when
the hash differs from the last one recorded, with both hashes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import anyio
import structlog
from sqlalchemy import select

from ..errors import TransientError
from . import audit
from .db import Database
from .models import AuditLog

_log = structlog.get_logger("msgr_bridge.audit")

CONFIG_CHANGED = "config.changed"
CREDENTIAL_READ = "credential.read"
CREDENTIAL_WRITE = "credential.write"
CREDENTIAL_DELETE = "credential.delete"


class CredentialAudit:
    """Records credential access in the audit log; one per process (the Bridge owns it)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._seen: set[tuple[str, str]] = set()
        self._lock = anyio.Lock()

    def wrap(self, secrets: Any, *, account_id: str, actor: str) -> AuditedSecrets:
        """An ``AccountSecrets`` handle over ``secrets`` (a ``ScopedSecrets``) that audits as ``actor``."""
        return AuditedSecrets(secrets, self, account_id=account_id, actor=actor)

    async def _append(self, actor: str, action: str, account_id: str, details: dict[str, Any]) -> None:
        try:
            async with self.db.session() as s:
                await audit.append(s, actor, action, account_id, details)
        except Exception as exc:
            _log.error("audit.write_failed", action=action, account=account_id, error=type(exc).__name__)
            raise TransientError(
                f"could not record {action} of account {account_id} in the audit log",
                hint="check that the database is reachable; the connection is retried",
            ) from None

    async def read(self, account_id: str, key: str, actor: str) -> None:
        if (account_id, key) in self._seen:
            return
        async with self._lock:
            if (account_id, key) in self._seen:
                return
            await self._append(actor, CREDENTIAL_READ, account_id, {"key": key, "first_in_process": True})
            self._seen.add((account_id, key))

    async def write(self, account_id: str, key: str, actor: str, expires_at: datetime | None) -> None:
        await self._append(actor, CREDENTIAL_WRITE, account_id, {"key": key, "expires_at": expires_at})

    async def delete(self, account_id: str, key: str, actor: str) -> None:
        await self._append(actor, CREDENTIAL_DELETE, account_id, {"key": key})


class AuditedSecrets:
    """``AccountSecrets`` that records access (see the module docs) before handing out a secret."""

    __slots__ = ("_account_id", "_actor", "_audit", "_inner")

    def __init__(self, inner: Any, audit_: CredentialAudit, *, account_id: str, actor: str) -> None:
        self._inner = inner
        self._audit = audit_
        self._account_id = account_id
        self._actor = actor

    @property
    def account_id(self) -> str:
        return self._account_id

    def __repr__(self) -> str:
        return f"AuditedSecrets(account_id={self._account_id!r})"

    async def get(self, key: str) -> str:
        value: str = await self._inner.get(key)
        await self._audit.read(self._account_id, key, self._actor)
        return value

    async def get_optional(self, key: str) -> str | None:
        value: str | None = await self._inner.get_optional(key)
        if value is not None:
            await self._audit.read(self._account_id, key, self._actor)
        return value

    async def put(self, key: str, value: str, *, expires_at: datetime | None = None) -> None:
        await self._inner.put(key, value, expires_at=expires_at)
        await self._audit.write(self._account_id, key, self._actor, expires_at)

    async def delete(self, key: str) -> None:
        await self._inner.delete(key)
        await self._audit.delete(self._account_id, key, self._actor)


def config_digest(settings: Any) -> str:
    """SHA-256 of the effective, redacted configuration (canonical JSON)."""
    from ..config import effective_config

    body = json.dumps(effective_config(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


async def record_config_change(db: Database, settings: Any, *, actor: str = "system") -> str | None:
    """Append ``config.changed`` when the configuration differs from the last one recorded.

    Returns the new digest when an entry was written, None when the configuration is unchanged.
    """
    digest = config_digest(settings)
    async with db.session() as s:
        previous = (
            await s.execute(
                select(AuditLog.details)
                .where(AuditLog.action == CONFIG_CHANGED)
                .order_by(AuditLog.seq.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        last = (previous or {}).get("sha256")
        if last == digest:
            return None
        source = getattr(settings, "source_path", None)
        await audit.append(
            s,
            actor,
            CONFIG_CHANGED,
            str(source) if source is not None else "(defaults and environment)",
            {"sha256": digest, "previous_sha256": last},
        )
    _log.info("config.changed", sha256=digest, previous_sha256=last)
    return digest
