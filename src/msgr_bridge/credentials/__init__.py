"""Credentials: account secrets and blob encryption behind one async interface.

``CredentialStore`` is the interface; ``LocalKeystore`` (an AES-GCM encrypted file) and
``VaultCredentialStore`` (Vault/OpenBao KV v2 + Transit) implement it. A connector only ever receives a
``ScopedSecrets`` handle bound to its own account. ``VaultResolver`` resolves ``vault://`` references
in the configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import CredentialStore, ExpiringSecret
from .keystore import LocalKeystore, generate_key, load_key
from .scoped import ScopedSecrets

if TYPE_CHECKING:
    from .vault import VaultCredentialStore, VaultResolver
    from .vault_client import VaultConnection, VaultSettings

_VAULT_NAMES = {
    "VaultCredentialStore": "vault",
    "VaultResolver": "vault",
    "VaultConnection": "vault_client",
    "VaultSettings": "vault_client",
}


def __getattr__(name: str) -> Any:
    """The Vault parts import hvac (the ``[vault]`` extra): loaded on first use, not with the package."""
    module = _VAULT_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CredentialStore",
    "ExpiringSecret",
    "LocalKeystore",
    "ScopedSecrets",
    "VaultConnection",
    "VaultCredentialStore",
    "VaultResolver",
    "VaultSettings",
    "generate_key",
    "load_key",
]
