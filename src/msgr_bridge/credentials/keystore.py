"""The local keystore: every account secret in one AES-GCM encrypted file (the embedded default).

Operators give the 32-byte key either as base64 (the caller resolves it from the environment, e.g.
``MSGR_BRIDGE_KEYSTORE_KEY``; ``generate_key()`` makes one) or as a key file, which is created with
mode 0600 on first run. Keep the key apart from the keystore file: whoever holds both holds every linked
account.

On disk the keystore is a small JSON envelope (format, version, nonce, ciphertext). Each write uses a fresh
random nonce and replaces the file atomically (temporary file, fsync, rename), so a crash never leaves a
half-written keystore. Separate keys for the file and for blobs are derived from the master key with HKDF.
A wrong key is reported as "the keystore key does not match ..." and never yields garbage: AES-GCM
authenticates every byte.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import structlog

from ..errors import CredentialError, CredentialNotFound
from .base import ExpiringSecret, PutRotate, as_utc, check_name, register_secret

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_log = structlog.get_logger("msgr_bridge.credentials.keystore")

FORMAT = "msgr-bridge-keystore"
VERSION = 1
BLOB_PREFIX = "mbks1."
_FILE_AAD = b"msgr-bridge-keystore/v1"
_T = TypeVar("_T")
_Data = dict[str, dict[str, dict[str, Any]]]
"""account_id -> key -> {"value": str, "expires_at": iso or None}"""


def generate_key() -> str:
    """A fresh random key, base64-encoded, suitable for ``key_b64`` (what ``AESGCM.generate_key`` makes)."""
    return base64.b64encode(os.urandom(32)).decode()


def load_key(*, key_b64: str | None = None, key_file: Path | None = None) -> bytes:
    """Resolve the 32-byte master key: from base64 text, or from a key file created (0600) when missing."""
    if key_b64 is not None:
        return _decode_key(key_b64, "the keystore key given in the configuration")
    if key_file is None:
        raise CredentialError(
            "no keystore key was configured",
            hint="set MSGR_BRIDGE_KEYSTORE_KEY to a base64 32-byte key, or configure a key file",
        )
    key_file = Path(key_file)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(key_file.stat().st_mode)
        if mode & 0o077:
            raise CredentialError(
                f"the keystore key file {key_file} is readable by other users (mode {mode:o})",
                hint=f"run: chmod 600 {key_file}",
            ) from None
        return _decode_key(key_file.read_text().strip(), f"the keystore key file {key_file}")
    except OSError as exc:
        raise CredentialError(
            f"cannot create the keystore key file {key_file}: {exc.strerror}",
            hint="check that the data directory exists and is writable by the bridge",
        ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(generate_key() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    _log.info("keystore.key_created", key_file=str(key_file))
    return _decode_key(key_file.read_text().strip(), f"the keystore key file {key_file}")


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise CredentialError(
            f"{where} is not a base64-encoded 32-byte key",
            hint="generate one: python -c 'import msgr_bridge.credentials as c; print(c.generate_key())'",
        )
    return key


def _derive(master: bytes, purpose: bytes) -> AESGCM:
    """Imports cryptography (~7 MB resident) when a secret is first read or written, not at start: a
    bridge with no keystore file yet (no account linked) never loads it (issue 19, idle memory)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"msgr-bridge keystore " + purpose)
    return AESGCM(hkdf.derive(master))


class LocalKeystore(PutRotate):
    """A ``CredentialStore`` backed by one encrypted file. Safe for one process with many tasks; writes
    from several processes (the CLI next to a running bridge) are serialised with a lock file."""

    def __init__(self, path: Path | str, key: bytes) -> None:
        if len(key) != 32:
            raise CredentialError("the keystore key must be 32 bytes", hint="see load_key()")
        self.path = Path(path)
        self._key = key
        self._lock = anyio.Lock()

    @cached_property
    def _file_aead(self) -> AESGCM:
        return _derive(self._key, b"file v1")

    @cached_property
    def _blob_aead(self) -> AESGCM:
        return _derive(self._key, b"blob v1")

    @classmethod
    def open(
        cls, path: Path | str, *, key_b64: str | None = None, key_file: Path | str | None = None
    ) -> LocalKeystore:
        """Build a keystore and check at once that the key opens an existing file."""
        store = cls(path, load_key(key_b64=key_b64, key_file=Path(key_file) if key_file else None))
        store._read()
        return store

    def __repr__(self) -> str:
        return f"LocalKeystore(path={str(self.path)!r})"

    # --- file format ----------------------------------------------------------------------------------

    def _read(self) -> _Data:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            envelope = json.loads(raw)
            if envelope.get("format") != FORMAT or envelope.get("version") != VERSION:
                raise ValueError("not a keystore")
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            ciphertext = base64.b64decode(envelope["ciphertext"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise CredentialError(
                f"{self.path} is not a msgr-bridge keystore (version {VERSION})",
                hint="restore it from a backup, or move it away to start an empty keystore",
            ) from None
        aead = self._file_aead
        from cryptography.exceptions import InvalidTag  # loaded with the AEAD above

        try:
            plain = aead.decrypt(nonce, ciphertext, _FILE_AAD)
        except InvalidTag:
            raise CredentialError(
                f"the keystore key does not match {self.path} (or the file was altered)",
                hint="use the key this keystore was created with (MSGR_BRIDGE_KEYSTORE_KEY or the key file)",
            ) from None
        data: _Data = json.loads(plain)["accounts"]
        return data

    def _write(self, data: _Data) -> None:
        nonce = os.urandom(12)
        plain = json.dumps({"accounts": data}, separators=(",", ":"), sort_keys=True).encode()
        envelope = {
            "format": FORMAT,
            "version": VERSION,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(self._file_aead.encrypt(nonce, plain, _FILE_AAD)).decode(),
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(envelope, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _modify(self, change: Callable[[_Data], _T]) -> _T:
        with self._file_lock():
            data = self._read()
            result = change(data)
            self._write(data)
            return result

    async def _in_thread(self, fn: Callable[[], _T]) -> _T:
        async with self._lock:
            return await anyio.to_thread.run_sync(fn)

    # --- CredentialStore ------------------------------------------------------------------------------

    async def get(self, account_id: str, key: str) -> str:
        value = await self.get_optional(account_id, key)
        if value is None:
            raise CredentialNotFound(
                f"no secret {key!r} for account {account_id!r}",
                hint="link the account again, or store the secret with `msgr-bridge accounts`",
            )
        return value

    async def get_optional(self, account_id: str, key: str) -> str | None:
        check_name("account id", account_id)
        check_name("secret key", key)
        data = await self._in_thread(self._read)
        entry = data.get(account_id, {}).get(key)
        if entry is None:
            return None
        value: str = entry["value"]
        register_secret(value)
        return value

    async def _set(
        self, account_id: str, key: str, value: str, expires_at: datetime | None, *, must_exist: bool
    ) -> None:
        check_name("account id", account_id)
        check_name("secret key", key)
        if not isinstance(value, str):
            raise CredentialError(f"secret {key!r} must be a string, not {type(value).__name__}")
        expiry = as_utc(expires_at)
        register_secret(value)

        def change(data: _Data) -> None:
            secrets = data.setdefault(account_id, {})
            if must_exist and key not in secrets:
                raise CredentialNotFound(f"no secret {key!r} for account {account_id!r} to rotate")
            secrets[key] = {"value": value, "expires_at": expiry.isoformat() if expiry else None}

        await self._in_thread(lambda: self._modify(change))
        _log.info("credential.stored", account_id=account_id, key=key, rotated=must_exist)

    async def delete(self, account_id: str, key: str) -> None:
        check_name("account id", account_id)
        check_name("secret key", key)

        def change(data: _Data) -> None:
            secrets = data.get(account_id, {})
            secrets.pop(key, None)
            if not secrets:
                data.pop(account_id, None)

        await self._in_thread(lambda: self._modify(change))
        _log.info("credential.deleted", account_id=account_id, key=key)

    async def delete_account(self, account_id: str) -> None:
        check_name("account id", account_id)
        await self._in_thread(lambda: self._modify(lambda data: data.pop(account_id, None)))
        _log.info("credential.account_deleted", account_id=account_id)

    async def keys(self, account_id: str) -> list[str]:
        check_name("account id", account_id)
        data = await self._in_thread(self._read)
        return sorted(data.get(account_id, {}))

    async def expiring_before(self, when: datetime) -> list[ExpiringSecret]:
        limit = as_utc(when)
        assert limit is not None
        data = await self._in_thread(self._read)
        found = [
            ExpiringSecret(account_id, key, datetime.fromisoformat(entry["expires_at"]))
            for account_id, secrets in data.items()
            for key, entry in secrets.items()
            if entry.get("expires_at")
        ]
        return sorted((s for s in found if s.expires_at < limit), key=lambda s: s.expires_at)

    async def encrypt(self, account_id: str, data: bytes) -> str:
        check_name("account id", account_id)
        nonce = os.urandom(12)
        sealed = self._blob_aead.encrypt(nonce, bytes(data), b"blob/" + account_id.encode())
        return BLOB_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    async def decrypt(self, account_id: str, token: str) -> bytes:
        check_name("account id", account_id)
        try:
            if not token.startswith(BLOB_PREFIX):
                raise ValueError("prefix")
            raw = base64.urlsafe_b64decode(token[len(BLOB_PREFIX) :].encode())
            if len(raw) < 12 + 16:
                raise ValueError("short")
        except (ValueError, binascii.Error, AttributeError):
            raise CredentialError(
                "this blob was not encrypted by a msgr-bridge local keystore",
                hint="a blob encrypted by Vault Transit needs the Vault backend",
            ) from None
        aead = self._blob_aead
        from cryptography.exceptions import InvalidTag  # loaded with the AEAD above

        try:
            return aead.decrypt(raw[:12], raw[12:], b"blob/" + account_id.encode())
        except InvalidTag:
            raise CredentialError(
                f"this blob cannot be decrypted for account {account_id!r}",
                hint="it belongs to another account, was altered, or the keystore key changed",
            ) from None

    async def aclose(self) -> None:
        return None
