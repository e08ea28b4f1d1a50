"""Secret references: how the configuration names a secret without containing it.

Three forms are accepted wherever the configuration wants a secret:

``env://NAME``
    the value of environment variable ``NAME`` (letters, digits and ``_``; must be set and non-empty).
``file://PATH``
    the content of a file, minus one trailing newline (``file:///run/secrets/bridge_key`` is absolute,
    ``file://secrets/key`` is relative to the working directory, ``file://~/key`` expands ``~``). Keep it
    ``chmod 600``: a world-readable secret file is logged as a warning. Docker and Kubernetes secrets
    mounted as files fit here.
``vault://PATH#KEY``
    field ``KEY`` of the Vault/OpenBao KV secret at ``PATH`` (``vault://secret/msgr-bridge/irc#password``:
    the first segment is the KV v2 mount). Resolved by the Vault backend, passed in as a ``VaultResolver``.

``SecretRef`` is usable directly as a pydantic field type: a plain value is refused with a message that
says to use a reference, without repeating the value. ``resolve`` turns a reference into the secret and
registers it with the log redactor, so it can never appear in a log line. Every failure is a
``SecretReferenceError`` that names the reference (never the value) and says why.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio.to_thread
import structlog
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from ..errors import BridgeError, CredentialNotFound, SecretReferenceError, VaultUnavailable
from ..observability.logging import register_secret

__all__ = ["MAX_FILE_BYTES", "Scheme", "SecretRef", "VaultResolver", "parse_ref", "resolve"]

Scheme = Literal["env", "file", "vault"]

MAX_FILE_BYTES = 64 * 1024
"""A ``file://`` secret larger than this is refused: it is almost certainly the wrong file."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAULT_PATH = re.compile(r"^[A-Za-z0-9_.@-]+(/[A-Za-z0-9_.@-]+)*$")
_VAULT_KEY = re.compile(r"^[A-Za-z0-9_.@-]+$")
_FORMS = "env://NAME, file://PATH or vault://PATH#KEY"
_PATTERN = r"^(env://[A-Za-z_][A-Za-z0-9_]*|file://.+|vault://[^#]+#.+)$"

_log = structlog.get_logger("msgr_bridge.credentials.refs")


class VaultResolver(Protocol):
    """Reads one field of a KV secret; implemented by ``msgr_bridge.credentials.vault.VaultResolver``."""

    async def read(self, path: str, key: str) -> str: ...


def _refuse(message: str, hint: str | None = None) -> SecretReferenceError:
    return SecretReferenceError(message, hint=hint or f"write a reference as {_FORMS}")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A parsed reference: ``scheme``, ``path`` (variable name, file path or Vault path) and ``key``.

    ``str(ref)`` gives the reference back in its canonical form; it is safe to print and log.
    """

    scheme: Scheme
    path: str
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}" + (f"#{self.key}" if self.key is not None else "")

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """Parse ``text``; a ``SecretReferenceError`` says what is wrong (a plain value is never echoed)."""
        if not isinstance(text, str):
            raise _refuse(f"a secret reference must be a string, not {type(text).__name__}")
        scheme, sep, rest = text.strip().partition("://")
        if not sep or scheme not in ("env", "file", "vault"):
            raise _refuse(
                "a plain value is not allowed here: secrets are given as references",
                hint=f"use {_FORMS} (for example env://MY_PASSWORD), and put the secret itself there",
            )
        where = f"{scheme}://{rest}"
        if scheme == "env":
            if not _ENV_NAME.match(rest):
                raise _refuse(
                    f"{where}: not a valid environment variable name",
                    hint="write env://NAME with letters, digits and underscores, e.g. env://IRC_PASSWORD",
                )
            return cls("env", rest)
        if scheme == "file":
            if not rest or rest.endswith("/"):
                raise _refuse(
                    f"{where}: names no file", hint="write file:///absolute/path or file://relative/path"
                )
            return cls("file", rest)
        path, hash_, key = rest.partition("#")
        path = path.strip("/")
        if not _VAULT_PATH.match(path) or ".." in path.split("/"):
            raise _refuse(
                f"{where}: not a valid Vault path",
                hint="write vault://MOUNT/PATH#KEY, e.g. vault://secret/msgr-bridge/irc#password",
            )
        if not hash_ or not _VAULT_KEY.match(key):
            raise _refuse(
                f"{where}: says which secret but not which field",
                hint=f"add the field after '#': vault://{path}#password",
            )
        return cls("vault", path, key)

    # --- pydantic integration: ``field: SecretRef`` in a settings model -----------------------------------

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": _PATTERN, "description": f"a secret reference: {_FORMS}"}

    @classmethod
    def _validate(cls, value: Any) -> SecretRef:
        if isinstance(value, SecretRef):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError("secret_ref", "must be a secret reference ({forms})", {"forms": _FORMS})
        try:
            return cls.parse(value)
        except SecretReferenceError as e:
            # the error text never contains a plain value; the hint goes with it
            raise PydanticCustomError(
                "secret_ref", "{message}; {hint}", {"message": e.message, "hint": e.hint}
            ) from None


def parse_ref(text: str) -> SecretRef:
    """``SecretRef.parse``: ``"vault://secret/x#pw"`` -> ``SecretRef("vault", "secret/x", "pw")``."""
    return SecretRef.parse(text)


# --- resolution -------------------------------------------------------------------------------------------


async def resolve(
    ref: SecretRef | str,
    *,
    vault: VaultResolver | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Return the secret ``ref`` names, registered with the log redactor.

    ``environ`` defaults to ``os.environ``. ``vault`` is needed only for ``vault://`` references.
    ``VaultUnavailable`` passes through unchanged (the caller may retry); anything else that goes wrong is
    a ``SecretReferenceError``.
    """
    parsed = ref if isinstance(ref, SecretRef) else SecretRef.parse(ref)
    if parsed.scheme == "env":
        value = _from_env(parsed, os.environ if environ is None else environ)
    elif parsed.scheme == "file":
        value = await anyio.to_thread.run_sync(_from_file, parsed)
    else:
        value = await _from_vault(parsed, vault)
    if not value:
        raise _refuse(f"{parsed}: the secret is empty", hint="store the actual secret there")
    register_secret(value)
    return value


def _from_env(ref: SecretRef, environ: Mapping[str, str]) -> str:
    value = environ.get(ref.path)
    if value is None:
        raise _refuse(
            f"{ref}: the environment variable {ref.path} is not set",
            hint=f"export {ref.path}=... in the bridge's environment (systemd Environment=, docker -e)",
        )
    return value


def _from_file(ref: SecretRef) -> str:
    path = Path(ref.path).expanduser()
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(f"{ref}: {path} is not a regular file", hint="point file:// at the secret file")
        if info.st_size > MAX_FILE_BYTES:
            raise _refuse(
                f"{ref}: {path} is {info.st_size} bytes, too large to be a secret",
                hint="point file:// at a file that holds only the secret",
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _refuse(f"{ref}: {path} does not exist", hint="create it (chmod 600) or fix the path") from None
    except PermissionError:
        raise _refuse(
            f"{ref}: {path} is not readable by this user",
            hint="make it readable by the bridge's user only: chown it and chmod 600",
        ) from None
    except OSError as e:
        raise _refuse(f"{ref}: cannot read {path}: {e.strerror}") from None
    if info.st_mode & stat.S_IROTH:
        _log.warning(
            "credentials.secret_file_world_readable",
            reference=str(ref),
            hint=f"run: chmod 600 {path}",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(f"{ref}: {path} is not UTF-8 text", hint="store the secret as text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


async def _from_vault(ref: SecretRef, vault: VaultResolver | None) -> str:
    if vault is None:
        raise _refuse(
            f"{ref}: vault:// references need Vault",
            hint='set [credentials] backend = "vault" and configure [credentials.vault], or use env:// or file://',
        )
    assert ref.key is not None  # parse guarantees a key for vault://
    try:
        value = await vault.read(ref.path, ref.key)
    except (SecretReferenceError, VaultUnavailable):
        raise
    except CredentialNotFound as e:
        raise _refuse(f"{ref}: not found in Vault ({e.message})", hint=e.hint) from None
    except BridgeError as e:
        raise _refuse(f"{ref}: {e.message}", hint=e.hint) from None
    except Exception as e:
        raise _refuse(f"{ref}: reading it from Vault failed ({type(e).__name__})") from None
    if not isinstance(value, str):
        raise _refuse(f"{ref}: Vault returned {type(value).__name__}, not text")
    return value
