"""Build the configured credential store (the local keystore, or Vault/OpenBao)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..extras import require
from .base import CredentialStore
from .keystore import LocalKeystore
from .refs import resolve


async def build_credential_store(settings: Any) -> CredentialStore:
    """``settings`` is the bridge's ``Settings``. Vault references in the config itself (``token``,
    ``secret_id``) may only use ``env://`` or ``file://``: Vault cannot unlock itself."""
    creds = settings.credentials
    data_dir = settings.bridge.data_dir
    if creds.backend == "keystore":
        ref = creds.keystore_key
        key_b64: str | None = None
        if ref.scheme != "env" or ref.path in os.environ:
            key_b64 = await resolve(ref)
        path = creds.keystore_path or data_dir / "keystore.json"
        key_file = creds.key_file or data_dir / "keystore.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        return LocalKeystore.open(path, key_b64=key_b64, key_file=None if key_b64 else key_file)
    require("vault", wanted_by='[credentials] backend = "vault"')
    from .vault import VaultCredentialStore
    from .vault_client import VaultSettings

    vault = creds.vault
    for ref in (vault.token, vault.secret_id):
        if ref is not None and ref.scheme == "vault":
            raise ConfigError(
                "credentials.vault: the Vault token and AppRole secret id cannot themselves come from Vault",
                hint="use env://NAME or file://PATH for them",
            )
    token = await resolve(vault.token) if vault.token is not None else None
    secret_id = await resolve(vault.secret_id) if vault.secret_id is not None else None
    return await VaultCredentialStore.connect(
        VaultSettings(
            url=vault.url,
            token=token if vault.auth == "token" else None,
            role_id=vault.role_id or None if vault.auth == "approle" else None,
            secret_id=secret_id if vault.auth == "approle" else None,
            approle_mount=vault.approle_mount,
            namespace=vault.namespace or None,
            kv_mount=vault.kv_mount,
            prefix=vault.prefix,
            transit_mount=vault.transit_mount,
            transit_key=vault.key_name,
            verify=vault.verify,
            timeout=vault.timeout_s,
        )
    )
