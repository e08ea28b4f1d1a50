"""Credentials: account secrets and blob encryption behind one async interface.

``CredentialStore`` is the interface; ``LocalKeystore`` (an AES-GCM encrypted file) and
``VaultCredentialStore`` (Vault/OpenBao KV v2 + Transit) implement it. A connector only ever receives a
``ScopedSecrets`` handle bound to its own account. ``VaultResolver`` resolves ``vault://`` references
in the configuration.
"""

from .base import CredentialStore, ExpiringSecret
from .keystore import LocalKeystore, generate_key, load_key
from .scoped import ScopedSecrets
from .vault import VaultCredentialStore, VaultResolver
from .vault_client import VaultConnection, VaultSettings

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
