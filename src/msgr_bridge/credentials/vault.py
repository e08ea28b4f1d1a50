"""The Vault backend: account secrets in KV v2, blobs through Transit, ``vault://`` references.

Layout (with the default settings): the secrets of one account are the key/value pairs of one KV v2
secret at ``secret/msgr-bridge/accounts/{account_id}``; each secret's expiry is kept in that path's
``custom_metadata`` as ``exp.{key}`` (so a monitor with a metadata-only policy can watch expiries without
reading any secret). Writes use check-and-set, so two writers never silently overwrite each other.
``rotate`` writes a new version and keeps the previous one in KV history (roll back with
``bao kv rollback``); ``delete`` destroys the older versions too, so a deleted secret cannot be read back.

Blobs are encrypted with the Transit key ``msgr-bridge`` as a *derived* key, with the account id as
context: a ciphertext of one account does not decrypt for another.

A minimal policy for the bridge (default mounts)::

    path "secret/data/msgr-bridge/accounts/*"     { capabilities = ["create", "read", "update"] }
    path "secret/metadata/msgr-bridge/accounts/*" { capabilities = ["read", "update", "delete", "list"] }
    path "secret/destroy/msgr-bridge/accounts/*"  { capabilities = ["update"] }
    path "transit/encrypt/msgr-bridge"            { capabilities = ["create", "update"] }
    path "transit/decrypt/msgr-bridge"            { capabilities = ["update"] }
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from datetime import datetime
from typing import Any

import hvac
import hvac.exceptions
import structlog

from ..errors import CredentialError, CredentialNotFound, SecretReferenceError
from .base import ExpiringSecret, PutRotate, as_utc, check_name, register_secret
from .vault_client import VaultConnection, VaultSettings

_log = structlog.get_logger("msgr_bridge.credentials.vault")

_EXP = "exp."
_CAS_TRIES = 5


class VaultCredentialStore(PutRotate):
    """A ``CredentialStore`` on Vault or OpenBao. Call ``await open()`` before use, and run
    ``connection.run_renewal()`` in the background for tokens that expire."""

    def __init__(self, settings: VaultSettings, *, connection: VaultConnection | None = None) -> None:
        self.settings = settings
        self.connection = connection or VaultConnection(settings)

    @classmethod
    async def connect(cls, settings: VaultSettings) -> VaultCredentialStore:
        store = cls(settings)
        await store.connection.open()
        return store

    async def open(self) -> None:
        await self.connection.open()

    async def aclose(self) -> None:
        await self.connection.aclose()

    async def run_renewal(self) -> None:
        """See ``VaultConnection.run_renewal``."""
        await self.connection.run_renewal()

    def resolver(self) -> VaultResolver:
        """A ``vault://`` reference resolver sharing this store's authenticated connection."""
        return VaultResolver(self.connection)

    def __repr__(self) -> str:
        return f"VaultCredentialStore({self.settings!r})"

    # --- KV v2 ----------------------------------------------------------------------------------------

    def _path(self, account_id: str) -> str:
        return f"{self.settings.prefix.strip('/')}/{check_name('account id', account_id)}"

    async def _read(self, account_id: str) -> tuple[dict[str, str], dict[str, str], int]:
        """(data, custom_metadata, version) of an account's path; version 0 when nothing is stored."""
        path, mount = self._path(account_id), self.settings.kv_mount

        def read(c: hvac.Client) -> dict[str, Any] | None:
            try:
                result: dict[str, Any] = c.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=mount, raise_on_deleted_version=True
                )
                return result
            except hvac.exceptions.InvalidPath:
                return None

        result = await self.connection.call(read, f"read the secrets of account {account_id!r}")
        if result is None:
            return {}, {}, 0
        meta = result["data"]["metadata"]
        return dict(result["data"]["data"] or {}), dict(meta.get("custom_metadata") or {}), meta["version"]

    async def _write(
        self,
        account_id: str,
        change: Any,
        what: str,
    ) -> int:
        """Apply ``change(data, custom_metadata)`` with check-and-set; return the new version (0: deleted)."""
        path, mount = self._path(account_id), self.settings.kv_mount
        for _ in range(_CAS_TRIES):
            data, custom, version = await self._read(account_id)
            change(data, custom)
            if not data:
                if version:
                    await self.connection.call(
                        lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(
                            path=path, mount_point=mount
                        ),
                        what,
                    )
                return 0

            def write(c: hvac.Client, data: dict[str, str] = data, version: int = version) -> int | None:
                try:
                    r = c.secrets.kv.v2.create_or_update_secret(
                        path=path, secret=data, cas=version, mount_point=mount
                    )
                    return int(r["data"]["version"])
                except hvac.exceptions.InvalidRequest as exc:
                    if "check-and-set" in str(exc):
                        return None
                    raise

            new_version = await self.connection.call(write, what)
            if new_version is None:
                continue  # somebody else wrote in between: read again

            def write_meta(c: hvac.Client, custom: dict[str, str] = custom) -> None:
                c.secrets.kv.v2.update_metadata(path=path, custom_metadata=custom, mount_point=mount)

            await self.connection.call(write_meta, what)
            return new_version
        raise CredentialError(
            f"could not {what}: the secret kept changing under us",
            hint="another process is writing the same account's secrets in a loop",
        )

    async def get(self, account_id: str, key: str) -> str:
        value = await self.get_optional(account_id, key)
        if value is None:
            raise CredentialNotFound(
                f"no secret {key!r} for account {account_id!r} in Vault",
                hint="link the account again, or store the secret with `msgr-bridge accounts`",
            )
        return value

    async def get_optional(self, account_id: str, key: str) -> str | None:
        check_name("secret key", key)
        data, _custom, _version = await self._read(account_id)
        value = data.get(key)
        if value is not None:
            register_secret(value)
        return value

    async def _set(
        self, account_id: str, key: str, value: str, expires_at: datetime | None, *, must_exist: bool
    ) -> None:
        check_name("secret key", key)
        if not isinstance(value, str):
            raise CredentialError(f"secret {key!r} must be a string, not {type(value).__name__}")
        expiry = as_utc(expires_at)
        register_secret(value)

        def change(data: dict[str, str], custom: dict[str, str]) -> None:
            if must_exist and key not in data:
                raise CredentialNotFound(f"no secret {key!r} for account {account_id!r} to rotate")
            data[key] = value
            if expiry is None:
                custom.pop(_EXP + key, None)
            else:
                custom[_EXP + key] = expiry.isoformat()

        await self._write(account_id, change, f"store a secret of account {account_id!r}")
        _log.info("credential.stored", account_id=account_id, key=key, rotated=must_exist, backend="vault")

    async def delete(self, account_id: str, key: str) -> None:
        check_name("secret key", key)
        path, mount = self._path(account_id), self.settings.kv_mount

        def change(data: dict[str, str], custom: dict[str, str]) -> None:
            data.pop(key, None)
            custom.pop(_EXP + key, None)

        what = f"delete a secret of account {account_id!r}"
        version = await self._write(account_id, change, what)
        if version > 1:  # destroy the history that still holds the deleted value
            old = list(range(1, version))
            await self.connection.call(
                lambda c: c.secrets.kv.v2.destroy_secret_versions(path=path, versions=old, mount_point=mount),
                what,
            )
        _log.info("credential.deleted", account_id=account_id, key=key, backend="vault")

    async def delete_account(self, account_id: str) -> None:
        path, mount = self._path(account_id), self.settings.kv_mount

        def delete(c: hvac.Client) -> None:
            with contextlib.suppress(hvac.exceptions.InvalidPath):
                c.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=mount)

        await self.connection.call(delete, f"delete the secrets of account {account_id!r}")
        _log.info("credential.account_deleted", account_id=account_id, backend="vault")

    async def keys(self, account_id: str) -> list[str]:
        data, _custom, _version = await self._read(account_id)
        return sorted(data)

    async def expiring_before(self, when: datetime) -> list[ExpiringSecret]:
        limit = as_utc(when)
        assert limit is not None
        prefix, mount = self.settings.prefix.strip("/"), self.settings.kv_mount

        def list_accounts(c: hvac.Client) -> list[str]:
            try:
                result = c.secrets.kv.v2.list_secrets(path=prefix, mount_point=mount)
            except hvac.exceptions.InvalidPath:
                return []
            return [k for k in result["data"]["keys"] if not k.endswith("/")]

        found: list[ExpiringSecret] = []
        for account_id in await self.connection.call(list_accounts, "list accounts with secrets"):
            path = f"{prefix}/{account_id}"

            def read_meta(c: hvac.Client, path: str = path) -> dict[str, Any]:
                result: dict[str, Any] = c.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
                return result

            meta = await self.connection.call(read_meta, "read secret expiries")
            for name, stamp in (meta["data"].get("custom_metadata") or {}).items():
                if name.startswith(_EXP):
                    expires = datetime.fromisoformat(stamp)
                    if expires < limit:
                        found.append(ExpiringSecret(account_id, name[len(_EXP) :], expires))
        return sorted(found, key=lambda s: s.expires_at)

    # --- Transit --------------------------------------------------------------------------------------

    async def encrypt(self, account_id: str, data: bytes) -> str:
        context = base64.b64encode(check_name("account id", account_id).encode()).decode()
        plaintext = base64.b64encode(bytes(data)).decode()
        s = self.settings
        result = await self.connection.call(
            lambda c: c.secrets.transit.encrypt_data(
                name=s.transit_key, plaintext=plaintext, context=context, mount_point=s.transit_mount
            ),
            f"encrypt a blob for account {account_id!r}",
        )
        token: str = result["data"]["ciphertext"]
        return token

    async def decrypt(self, account_id: str, token: str) -> bytes:
        context = base64.b64encode(check_name("account id", account_id).encode()).decode()
        if not isinstance(token, str) or not token.startswith("vault:v"):
            raise CredentialError(
                "this blob was not encrypted by Vault Transit",
                hint="a blob encrypted by the local keystore needs the keystore backend",
            )
        s = self.settings

        def decrypt(c: hvac.Client) -> dict[str, Any] | None:
            try:
                r: dict[str, Any] = c.secrets.transit.decrypt_data(
                    name=s.transit_key, ciphertext=token, context=context, mount_point=s.transit_mount
                )
                return r
            except hvac.exceptions.InvalidRequest:
                return None

        result = await self.connection.call(decrypt, f"decrypt a blob for account {account_id!r}")
        if result is None:
            raise CredentialError(
                f"this blob cannot be decrypted for account {account_id!r}",
                hint="it belongs to another account, was altered, or the Transit key was replaced",
            )
        try:
            return base64.b64decode(result["data"]["plaintext"], validate=True)
        except (binascii.Error, ValueError):
            raise CredentialError("Vault returned a blob that is not base64") from None


class VaultResolver:
    """Resolves ``vault://{mount}/{path}#{key}`` secret references from the configuration.

    The first segment of ``path`` is the KV v2 mount (``secret/bridge/xmpp`` reads ``bridge/xmpp`` on the
    ``secret`` mount). The value is registered with the log redactor.
    """

    def __init__(self, connection: VaultConnection) -> None:
        self.connection = connection

    async def read(self, path: str, key: str) -> str:
        mount, _, sub = path.strip("/").partition("/")
        if not mount or not sub:
            raise SecretReferenceError(
                f"vault reference path {path!r} needs a mount and a path",
                hint="write it as vault://secret/some/path#key (the first segment is the KV v2 mount)",
            )

        def read(c: hvac.Client) -> dict[str, Any] | None:
            try:
                r: dict[str, Any] = c.secrets.kv.v2.read_secret_version(
                    path=sub, mount_point=mount, raise_on_deleted_version=True
                )
                return r
            except hvac.exceptions.InvalidPath:
                return None

        result = await self.connection.call(read, f"read the configuration secret at {path!r}")
        data = (result or {}).get("data", {}).get("data") or {}
        value = data.get(key)
        if not isinstance(value, str):
            raise SecretReferenceError(
                f"vault://{path}#{key} does not exist"
                if value is None
                else f"vault://{path}#{key} is not text",
                hint=f"store it with: bao kv put -mount={mount} {sub} {key}=...",
            )
        register_secret(value)
        return value
