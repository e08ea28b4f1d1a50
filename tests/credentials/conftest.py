"""Fixtures for the credential tests: a real OpenBao server, and each backend behind one ``store`` fixture."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from msgr_bridge.credentials import CredentialStore, LocalKeystore, VaultCredentialStore, VaultSettings
from msgr_bridge.testing import openbao
from msgr_bridge.testing.openbao import OpenBaoServer

openbao_server = openbao.openbao_server
fresh_openbao = openbao.fresh_openbao


def vault_settings_for(server: OpenBaoServer, **overrides: object) -> VaultSettings:
    """Settings with the root token, a unique prefix and Transit key, and quick retries."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "url": server.url,
        "token": server.root_token,
        "prefix": f"t-{tag}/accounts",
        "transit_key": f"key-{tag}",
        "retry_attempts": 3,
        "retry_base_delay": 0.05,
        "retry_max_delay": 0.2,
        "timeout": 5.0,
    }
    values.update(overrides)
    return VaultSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def vault_settings(openbao_server: OpenBaoServer) -> VaultSettings:
    return vault_settings_for(openbao_server)


@pytest.fixture
async def vault_store(vault_settings: VaultSettings) -> AsyncIterator[VaultCredentialStore]:
    store = await VaultCredentialStore.connect(vault_settings)
    yield store
    await store.aclose()


@pytest.fixture
def keystore(tmp_path: Path) -> LocalKeystore:
    return LocalKeystore.open(tmp_path / "keystore.json", key_file=tmp_path / "keystore.key")


@pytest.fixture(params=["keystore", pytest.param("vault", marks=pytest.mark.vault)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CredentialStore]:
    """Each backend in turn: the tests using it are the contract every ``CredentialStore`` meets."""
    if request.param == "keystore":
        yield LocalKeystore.open(tmp_path / "keystore.json", key_file=tmp_path / "keystore.key")
        return
    server: OpenBaoServer = request.getfixturevalue("openbao_server")
    vault = await VaultCredentialStore.connect(vault_settings_for(server))
    yield vault
    await vault.aclose()
