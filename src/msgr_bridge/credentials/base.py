"""The credential interface every backend implements, and the rules all backends share.

A ``CredentialStore`` holds the secrets of linked accounts (passwords, access tokens, cookies), each under
``(account_id, key)``, with an optional ``expires_at`` so the bridge can warn before a credential runs out.
It also encrypts and decrypts opaque blobs for one account (session files kept in the database), so the
database only ever holds ciphertext.

Two backends ship: ``LocalKeystore`` (one AES-GCM encrypted file, the embedded default) and
``VaultCredentialStore`` (HashiCorp Vault or OpenBao: KV v2 and Transit). Connectors never see a store:
they get a ``ScopedSecrets`` handle bound to their own account.

Names are checked before they reach a backend: an account id or a secret key is a plain name (letters,
digits, ``.``, ``_``, ``-``, ``@``, ``:``; no ``/``, no ``..``), so a crafted key can never be turned into a
path that reaches another account's secrets.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from ..errors import CredentialAccessDenied, CredentialError

_NAME = re.compile(r"^[A-Za-z0-9_@:][A-Za-z0-9._@:-]{0,99}$")


@dataclass(frozen=True, slots=True)
class ExpiringSecret:
    """A secret that expires (or must be renewed) at ``expires_at``; never carries the value itself."""

    account_id: str
    key: str
    expires_at: datetime


@runtime_checkable
class CredentialStore(Protocol):
    """The one async interface to account secrets and blob encryption.

    ``get`` raises ``CredentialNotFound`` for a missing secret; ``rotate`` replaces an existing secret and
    raises ``CredentialNotFound`` when there is none to rotate (a typo must not silently create a second
    credential). ``delete`` of a missing secret is a no-op. ``encrypt`` returns a printable token that
    only ``decrypt`` with the same ``account_id`` can open.
    """

    async def get(self, account_id: str, key: str) -> str: ...

    async def get_optional(self, account_id: str, key: str) -> str | None: ...

    async def put(
        self, account_id: str, key: str, value: str, *, expires_at: datetime | None = None
    ) -> None: ...

    async def rotate(
        self, account_id: str, key: str, value: str, *, expires_at: datetime | None = None
    ) -> None: ...

    async def delete(self, account_id: str, key: str) -> None: ...

    async def delete_account(self, account_id: str) -> None:
        """Remove every secret of one account (on unlink)."""
        ...

    async def keys(self, account_id: str) -> list[str]:
        """The names (never the values) of one account's secrets, sorted."""
        ...

    async def expiring_before(self, when: datetime) -> list[ExpiringSecret]:
        """Every secret whose ``expires_at`` is before ``when``, soonest first."""
        ...

    async def encrypt(self, account_id: str, data: bytes) -> str: ...

    async def decrypt(self, account_id: str, token: str) -> bytes: ...

    async def aclose(self) -> None: ...


def check_name(kind: str, name: str) -> str:
    """Return ``name`` when it is a plain name, else raise ``CredentialAccessDenied``.

    ``kind`` is ``"account id"`` or ``"secret key"``; it only shapes the message.
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise CredentialAccessDenied(
            f"{kind} {name!r} is not a plain name",
            hint="names may use letters, digits and . _ - @ : (no '/', no '..', at most 100 characters)",
        )
    return name


def as_utc(when: datetime | None) -> datetime | None:
    """Normalise an expiry to UTC; a naive datetime is refused (it would be ambiguous)."""
    if when is None:
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        raise CredentialError(
            f"expiry {when.isoformat()} has no time zone",
            hint="pass an aware datetime, e.g. datetime.now(UTC) + timedelta(days=30)",
        )
    return when.astimezone(UTC)


def register_secret(value: str | bytes) -> None:
    """Tell the log redactor about a secret value we just read, so no log line can contain it.

    The redactor lives in ``msgr_bridge.observability.logging``; when it is not importable (an embedded
    use without the observability package) this does nothing.
    """
    try:
        module = importlib.import_module("msgr_bridge.observability.logging")
    except ImportError:
        return
    register = getattr(module, "register_secret", None)
    if register is None:
        return
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return
    if value:
        register(value)


class PutRotate:
    """``put`` and ``rotate`` of a ``CredentialStore`` in terms of one ``_set`` (the backends differ only
    there): ``rotate`` refuses to create a secret that does not exist yet."""

    async def _set(
        self, account_id: str, key: str, value: str, expires_at: datetime | None, *, must_exist: bool
    ) -> None:
        raise NotImplementedError

    async def put(self, account_id: str, key: str, value: str, *, expires_at: datetime | None = None) -> None:
        await self._set(account_id, key, value, expires_at, must_exist=False)

    async def rotate(
        self, account_id: str, key: str, value: str, *, expires_at: datetime | None = None
    ) -> None:
        await self._set(account_id, key, value, expires_at, must_exist=True)
