"""The whatsmeow session database, encrypted at rest: it lives in a private temporary directory only while
the account runs, and is kept between runs as a secret of the account (the credential layer encrypts it:
the local keystore's AES-GCM, or Vault).

whatsmeow needs a SQLite file (device identity, Signal sessions and pre-keys, app-state keys, contacts).
``SessionFile`` creates a directory readable by this user only (in ``/dev/shm`` when it exists, so the
keys never touch a disk), writes the restored database there, takes consistent snapshots of it with
SQLite's online backup (safe while whatsmeow writes), and removes the directory when the account stops.
A snapshot is compressed (zlib) and base64-encoded into the ``session`` secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import sqlite3
import tempfile
import zlib
from pathlib import Path

from msgr_bridge.errors import AuthenticationFailed

MAX_SESSION_BYTES = 256 * 1024 * 1024
"""A restored session database larger than this is refused (a zip bomb in a tampered secret)."""
PREFIX = "wasess1:"


def _private_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def encode(db: bytes) -> str:
    return PREFIX + base64.b64encode(zlib.compress(db, 6)).decode()


def decode(blob: str) -> bytes:
    if not blob.startswith(PREFIX):
        raise AuthenticationFailed(
            "the stored WhatsApp session is not in a format this connector knows",
            hint="link the account again (QR code or pairing code)",
        )
    try:
        packed = base64.b64decode(blob[len(PREFIX) :].encode(), validate=True)
        inflater = zlib.decompressobj()
        db = inflater.decompress(packed, MAX_SESSION_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError("too large")
    except (ValueError, zlib.error) as exc:
        raise AuthenticationFailed(
            f"the stored WhatsApp session cannot be read ({exc})",
            hint="link the account again (QR code or pairing code)",
        ) from None
    return db


class SessionFile:
    """One account's session database on a private path for as long as the account runs."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="msgr-wa-", dir=_private_root()))
        os.chmod(self.directory, 0o700)
        self.path = self.directory / "session.db"
        self._saved_digest: str | None = None

    def restore(self, blob: str | None) -> None:
        """Write the stored database (``None``: start empty, for a new link)."""
        if blob is None:
            return
        data = decode(blob)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        self._saved_digest = hashlib.sha256(data).hexdigest()

    def snapshot(self) -> bytes | None:
        """A consistent copy of the database (SQLite online backup), or None when there is none yet."""
        if not self.path.exists():
            return None
        source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        target = sqlite3.connect(":memory:")
        try:
            source.backup(target)
            return target.serialize()
        finally:
            target.close()
            source.close()

    def changed_blob(self) -> str | None:
        """The encoded snapshot when it differs from what was last restored or saved, else None."""
        data = self.snapshot()
        if data is None:
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._saved_digest:
            return None
        self._saved_digest = digest
        return encode(data)

    def wipe(self) -> None:
        """Remove the directory and everything in it (the plaintext keys)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.directory)
