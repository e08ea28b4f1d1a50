"""The web app's sign-in store: the owner's login (one per tenant) and signed-in browsers (sessions).

Passwords are hashed with scrypt (``hashlib.scrypt``, RFC 7914) at OWASP's recommended cost (N=2^17, r=8,
p=1: 128 MiB and a few hundred milliseconds per hash), with a 16-byte random salt; the parameters are
stored with the hash (``scrypt$N$r$p$salt$hash``), so they can be raised later without breaking old hashes.
scrypt rather than argon2: it is memory-hard too and ships with Python's OpenSSL, so the bridge takes no
native dependency for it. Hashing runs in a worker thread: the event loop never waits on it.

A session cookie is 256 random bits; only its SHA-256 is stored. Sessions expire ``SESSION_TTL`` after
they were made, and a tenant keeps at most ``MAX_SESSIONS`` (signing in once more drops the oldest), so the
table stays small whatever happens. Expired sessions are deleted whenever one is created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import BridgeError
from .db import Database
from .models import WebOwner, WebSession
from .repos._base import Repository, new_id
from .types import utcnow

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
SCRYPT_MAXMEM = 256 * 1024 * 1024
SESSION_TTL = timedelta(days=14)
MAX_SESSIONS = 20
"""Sessions kept per tenant: a new one beyond this ends the oldest."""
LAST_SEEN_GRANULARITY = timedelta(minutes=5)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


class WebAuthError(BridgeError):
    code = "web_auth_failed"


def hash_password(password: str, *, n: int | None = None, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    n = n or SCRYPT_N
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison; a malformed hash never matches)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def check_new_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise WebAuthError(
            f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            hint="a few words are easier to remember than symbols",
        )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    tenant: str
    username: str
    expires_at: datetime


class WebAuthStore(Repository):
    """The owner's login and the sessions of one database."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(db)
        self._now = clock

    async def owner(self, tenant: str, *, session: AsyncSession | None = None) -> WebOwner | None:
        async with self._tx(session) as s:
            return await s.get(WebOwner, tenant)

    async def create_owner(self, tenant: str, username: str, password: str) -> None:
        """Create the tenant's owner; refused when one exists (the setup link works once)."""
        check_new_password(password)
        hashed = await anyio.to_thread.run_sync(hash_password, password)
        async with self._tx(None) as s:
            if await s.get(WebOwner, tenant) is not None:
                raise WebAuthError(
                    "this bridge already has an owner", hint="sign in with the owner's name and password"
                )
            s.add(WebOwner(tenant=tenant, username=username, password_hash=hashed))
            await s.flush()

    async def verify(self, tenant: str, username: str, password: str) -> bool:
        """Whether the name and password are the owner's (the hash is computed even without an owner, so
        the answer takes as long either way)."""
        owner = await self.owner(tenant)
        stored = owner.password_hash if owner is not None else _DUMMY_HASH
        ok = await anyio.to_thread.run_sync(check_password, password[:MAX_PASSWORD_LENGTH], stored)
        return owner is not None and ok and hmac.compare_digest(owner.username, username)

    async def create_session(self, tenant: str) -> tuple[str, SessionInfo]:
        """A new session's cookie value (shown once) and its info; drops expired and surplus sessions."""
        token = secrets.token_urlsafe(32)
        now = self._now()
        row = WebSession(
            id=new_id("wss"),
            tenant=tenant,
            token_hash=_hash(token),
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
        async with self._tx(None) as s:
            await s.execute(delete(WebSession).where(WebSession.expires_at <= now))
            kept = (
                await s.scalars(
                    select(WebSession.id)
                    .where(WebSession.tenant == tenant)
                    .order_by(WebSession.created_at.desc(), WebSession.id.desc())
                    .offset(MAX_SESSIONS - 1)
                )
            ).all()
            if kept:
                await s.execute(delete(WebSession).where(WebSession.id.in_(kept)))
            s.add(row)
            owner = await s.get(WebOwner, tenant)
            await s.flush()
        return token, SessionInfo(row.id, tenant, owner.username if owner else "", row.expires_at)

    async def session(self, token: str) -> SessionInfo | None:
        """The live session with this cookie value, or None (unknown or expired)."""
        if not token or len(token) > 100:
            return None
        now = self._now()
        async with self._tx(None) as s:
            row = (
                await s.execute(select(WebSession).where(WebSession.token_hash == _hash(token)))
            ).scalar_one_or_none()
            if row is None or row.expires_at <= now:
                return None
            if row.last_seen_at is None or now - row.last_seen_at >= LAST_SEEN_GRANULARITY:
                row.last_seen_at = now
            owner = await s.get(WebOwner, row.tenant)
            if owner is None:
                return None
            return SessionInfo(row.id, row.tenant, owner.username, row.expires_at)

    async def reset_owner(self, tenant: str, *, session: AsyncSession | None = None) -> bool:
        """Remove the tenant's owner login and every session of the tenant (a forgotten password: the next
        start prints a setup link again). Whether there was an owner."""
        async with self._tx(session) as s:
            await s.execute(delete(WebSession).where(WebSession.tenant == tenant))
            owner = await s.get(WebOwner, tenant)
            if owner is None:
                return False
            await s.delete(owner)
            return True

    async def end_session(self, session_id: str) -> None:
        async with self._tx(None) as s:
            await s.execute(delete(WebSession).where(WebSession.id == session_id))

    async def count_sessions(self, tenant: str) -> int:
        async with self._tx(None) as s:
            return int(
                await s.scalar(
                    select(func.count()).select_from(WebSession).where(WebSession.tenant == tenant)
                )
                or 0
            )


_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$AAAAAAAAAAAAAAAAAAAAAA==${'A' * 43}="
"""Checked when there is no owner, at the same cost as a real hash (it never matches)."""
