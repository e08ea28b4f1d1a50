"""API tokens for Msgr users: opaque, shown once, stored hashed, scoped per account and per action.

A token looks like ``mb_<43 url-safe characters>`` (256 random bits). Only its SHA-256 is stored, so a
database dump gives nobody a usable token; the plaintext is returned once, by ``create``, and never again.

Each token carries scopes: ``Scope(action, account)`` where ``action`` is one of read, send, edit, delete,
react, admin and ``account`` is a linked account id or ``"*"`` for all of the tenant's accounts. ``admin``
implies every other action on the same accounts. In text (CLI, config) a scope is written
``send:acct-1``, ``read:*`` or just ``read`` (meaning ``read:*``).

``authenticate(token)`` refuses unknown, expired and revoked tokens with distinct errors (``TokenUnknown``,
``TokenExpired``, ``TokenRevoked``), so the API and the logs can say which. The operator commands are
``msgr-bridge tokens create|list|revoke``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import BridgeError, TokenExpired, TokenRevoked, TokenUnknown
from .db import Database
from .models import ApiToken
from .repos._base import Repository, new_id
from .types import utcnow

TOKEN_PREFIX = "mb_"
LAST_USED_GRANULARITY = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per token, so authentication is not a write per request."""


class Action(StrEnum):
    READ = "read"
    SEND = "send"
    EDIT = "edit"
    DELETE = "delete"
    REACT = "react"
    ADMIN = "admin"


class InvalidScope(BridgeError):
    code = "invalid_scope"


@dataclass(frozen=True, slots=True)
class Scope:
    """Permission to do ``action`` on ``account`` (a linked account id, or ``"*"`` for all of them)."""

    action: Action
    account: str = "*"

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | Scope) -> Scope:
        """From ``"send:acct-1"``, ``"read"``, ``{"action": "send", "account": "acct-1"}`` or a Scope."""
        if isinstance(value, Scope):
            return value
        if isinstance(value, str):
            action, _, account = value.partition(":")
        elif isinstance(value, Mapping):
            action, account = value.get("action", ""), value.get("account", "*")
        else:
            raise InvalidScope(f"a scope must be text or a mapping, not {type(value).__name__}")
        try:
            parsed = Action(str(action).strip())
        except ValueError:
            raise InvalidScope(
                f"unknown scope action {action!r}",
                hint=f"use one of {', '.join(a.value for a in Action)}, e.g. send:acct-1 or read:*",
            ) from None
        account = str(account or "*").strip()
        if not account or any(c.isspace() for c in account):
            raise InvalidScope(f"scope account {account!r} is not an account id or '*'")
        return cls(parsed, account)

    def __str__(self) -> str:
        return f"{self.action.value}:{self.account}"

    def to_json(self) -> dict[str, str]:
        return {"action": self.action.value, "account": self.account}

    def allows(self, action: Action | str, account_id: str | None) -> bool:
        wanted = Action(action)
        if self.action is not Action.ADMIN and self.action is not wanted:
            return False
        return self.account == "*" or (account_id is not None and self.account == account_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """What is known about a token (never the token itself)."""

    id: str
    tenant: str
    name: str
    user_id: str | None
    scopes: tuple[Scope, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def allows(self, action: Action | str, account_id: str | None = None) -> bool:
        """Whether this token may do ``action`` on ``account_id`` (None: a tenant-wide action)."""
        return any(s.allows(action, account_id) for s in self.scopes)

    def status(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked`` (for ``tokens list``)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class NewToken:
    """The result of ``create``: ``token`` is shown to the user once and cannot be recovered."""

    token: str = field(repr=False)
    info: TokenInfo


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        user_id=row.user_id,
        scopes=tuple(Scope.parse(s) for s in row.scopes or ()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class TokenStore(Repository):
    """Create, authenticate, list and revoke API tokens. Methods take ``session=`` to join a transaction."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(db)
        self._now = clock

    async def create(
        self,
        *,
        tenant: str,
        name: str,
        scopes: Iterable[str | Mapping[str, Any] | Scope],
        user_id: str | None = None,
        expires_at: datetime | None = None,
        ttl: timedelta | None = None,
        session: AsyncSession | None = None,
    ) -> NewToken:
        """Issue a token. ``expires_at`` or ``ttl`` (not both) bound its life; neither means no expiry."""
        parsed = tuple(dict.fromkeys(Scope.parse(s) for s in scopes))
        if not parsed:
            raise InvalidScope(
                "a token needs at least one scope", hint="e.g. --scope read:* --scope send:acct-1"
            )
        if expires_at is not None and ttl is not None:
            raise BridgeError("give either expires_at or ttl for a token, not both")
        now = self._now()
        if ttl is not None:
            expires_at = now + ttl
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise BridgeError("a token's expiry needs a time zone", hint="use an aware datetime (UTC)")
            if expires_at <= now:
                raise BridgeError("a token's expiry must be in the future")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiToken(
            id=new_id("tok"),
            tenant=tenant,
            user_id=user_id,
            name=name,
            token_hash=hash_token(token),
            scopes=[s.to_json() for s in parsed],
            expires_at=expires_at,
            created_at=now,
        )
        async with self._tx(session) as s:
            s.add(row)
            await s.flush()
        return NewToken(token, _info(row))

    async def authenticate(self, token: str, *, session: AsyncSession | None = None) -> TokenInfo:
        """The token's info, or ``TokenUnknown`` / ``TokenExpired`` / ``TokenRevoked``."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            raise TokenUnknown("this is not a msgr-bridge API token", hint="tokens start with 'mb_'")
        now = self._now()
        async with self._tx(session) as s:
            row = (
                await s.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            ).scalar_one_or_none()
            if row is None:
                raise TokenUnknown("unknown API token", hint="create one with `msgr-bridge tokens create`")
            if row.revoked_at is not None:
                raise TokenRevoked(
                    f"API token {row.name!r} ({row.id}) was revoked at {row.revoked_at.isoformat()}",
                    hint="create a new token",
                )
            if row.expires_at is not None and row.expires_at <= now:
                raise TokenExpired(
                    f"API token {row.name!r} ({row.id}) expired at {row.expires_at.isoformat()}",
                    hint="create a new token",
                )
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
                row.last_used_at = now
            return _info(row)

    async def revoke(self, token_id: str, *, session: AsyncSession | None = None) -> TokenInfo:
        """Revoke by id (idempotent: revoking again keeps the first revocation time)."""
        async with self._tx(session) as s:
            row = await s.get(ApiToken, token_id)
            if row is None:
                raise TokenUnknown(f"no API token with id {token_id!r}", hint="see `msgr-bridge tokens list`")
            if row.revoked_at is None:
                row.revoked_at = self._now()
            return _info(row)

    async def get(self, token_id: str, *, session: AsyncSession | None = None) -> TokenInfo:
        async with self._tx(session) as s:
            row = await s.get(ApiToken, token_id)
            if row is None:
                raise TokenUnknown(f"no API token with id {token_id!r}", hint="see `msgr-bridge tokens list`")
            return _info(row)

    async def list(
        self,
        *,
        tenant: str | None = None,
        include_inactive: bool = True,
        session: AsyncSession | None = None,
    ) -> list[TokenInfo]:
        """Tokens (oldest first), optionally of one tenant and only the active ones."""
        query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
        if tenant is not None:
            query = query.where(ApiToken.tenant == tenant)
        async with self._tx(session) as s:
            infos = [_info(r) for r in (await s.execute(query)).scalars()]
        if not include_inactive:
            now = self._now()
            infos = [i for i in infos if i.status(now) == "active"]
        return infos


def ensure_aware(when: datetime) -> datetime:
    """For CLI parsing: an expiry without a zone is taken as UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
