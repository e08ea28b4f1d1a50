"""The Vault backend against a real OpenBao dev server: KV layout, Transit, AppRole, renewal, failures."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import hvac
import pytest
import structlog.testing

from msgr_bridge.credentials import VaultCredentialStore, VaultResolver, VaultSettings
from msgr_bridge.errors import (
    CredentialAccessDenied,
    CredentialError,
    SecretReferenceError,
    VaultUnavailable,
)
from msgr_bridge.testing.openbao import OpenBaoServer

from .conftest import vault_settings_for

pytestmark = pytest.mark.vault


def _setup_approle(server: OpenBaoServer, allowed_prefix: str, **role: Any) -> tuple[str, str, str]:
    """An AppRole whose policy covers only ``allowed_prefix``; returns (mount, role_id, secret_id)."""
    root = server.client()
    tag = uuid.uuid4().hex[:8]
    mount = f"approle-{tag}"
    root.sys.enable_auth_method(method_type="approle", path=mount)
    policy = f"""
    path "secret/data/{allowed_prefix}/*"     {{ capabilities = ["create", "read", "update"] }}
    path "secret/metadata/{allowed_prefix}/*" {{ capabilities = ["read", "update", "delete", "list"] }}
    path "secret/destroy/{allowed_prefix}/*"  {{ capabilities = ["update"] }}
    """
    root.sys.create_or_update_policy(name=f"bridge-{tag}", policy=policy)
    root.auth.approle.create_or_update_approle(
        role_name="bridge", token_policies=[f"bridge-{tag}"], mount_point=mount, **role
    )
    role_id = root.auth.approle.read_role_id(role_name="bridge", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role_name="bridge", mount_point=mount)["data"][
        "secret_id"
    ]
    return mount, role_id, secret_id


async def test_kv_layout_history_and_destroy(
    vault_store: VaultCredentialStore, openbao_server: OpenBaoServer
) -> None:
    root = openbao_server.client()
    path = f"{vault_store.settings.prefix}/acct-1"
    await vault_store.put("acct-1", "password", "v1")
    await vault_store.put("acct-1", "token", "tok")
    await vault_store.rotate("acct-1", "password", "v2")

    latest = root.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)["data"]
    assert latest["data"] == {"password": "v2", "token": "tok"}
    assert latest["metadata"]["version"] == 3
    # rotate keeps the previous value in KV history, for a rollback
    first = root.secrets.kv.v2.read_secret_version(path=path, version=2, raise_on_deleted_version=True)
    assert first["data"]["data"]["password"] == "v1"

    # delete destroys the history that still holds the value
    await vault_store.delete("acct-1", "password")
    meta = root.secrets.kv.v2.read_secret_metadata(path=path)["data"]
    assert all(v["destroyed"] for k, v in meta["versions"].items() if int(k) < 4)
    assert root.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)["data"][
        "data"
    ] == {"token": "tok"}

    await vault_store.delete("acct-1", "token")  # last key: the whole path goes
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.secrets.kv.v2.read_secret_metadata(path=path)


async def test_expiry_lives_in_custom_metadata(
    vault_store: VaultCredentialStore, openbao_server: OpenBaoServer
) -> None:
    from datetime import UTC, datetime, timedelta

    when = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    await vault_store.put("acct-1", "token", "t", expires_at=when)
    meta = openbao_server.client().secrets.kv.v2.read_secret_metadata(
        path=f"{vault_store.settings.prefix}/acct-1"
    )
    assert meta["data"]["custom_metadata"] == {"exp.token": when.isoformat()}
    assert [s.key for s in await vault_store.expiring_before(when + timedelta(seconds=1))] == ["token"]
    assert await vault_store.expiring_before(when) == []


async def test_transit_ciphertext_is_vault_format(vault_store: VaultCredentialStore) -> None:
    token = await vault_store.encrypt("acct-1", b"cookie jar")
    assert token.startswith("vault:v1:")
    assert await vault_store.decrypt("acct-1", token) == b"cookie jar"
    with pytest.raises(CredentialError, match="not encrypted by Vault Transit"):
        await vault_store.decrypt("acct-1", "mbks1.AAAA")


async def test_approle_login_with_a_restricted_policy(openbao_server: OpenBaoServer) -> None:
    allowed = f"ok-{uuid.uuid4().hex[:8]}"
    mount, role_id, secret_id = _setup_approle(openbao_server, allowed)
    settings = vault_settings_for(
        openbao_server, token=None, role_id=role_id, secret_id=secret_id, approle_mount=mount, prefix=allowed
    )
    store = await VaultCredentialStore.connect(settings)
    await store.put("acct-1", "password", "inside the policy")
    assert await store.get("acct-1", "password") == "inside the policy"

    outside = VaultCredentialStore(
        vault_settings_for(openbao_server, prefix="elsewhere"), connection=store.connection
    )
    with pytest.raises(CredentialAccessDenied, match="policy does not allow"):
        await outside.put("acct-1", "password", "outside the policy")
    with pytest.raises(CredentialAccessDenied):
        await store.encrypt("acct-1", b"transit is not in the policy")
    await store.aclose()


async def test_bad_approle_credentials_are_a_clear_error(openbao_server: OpenBaoServer) -> None:
    mount, role_id, _secret_id = _setup_approle(openbao_server, "x")
    settings = vault_settings_for(
        openbao_server, token=None, role_id=role_id, secret_id="wrong", approle_mount=mount
    )
    with pytest.raises(CredentialError, match="refused the AppRole login") as info:
        await VaultCredentialStore.connect(settings)
    assert "wrong" not in str(info.value)


async def test_a_refused_token_is_reported_at_startup(openbao_server: OpenBaoServer) -> None:
    with pytest.raises(CredentialError, match="refused the bridge's token"):
        await VaultCredentialStore.connect(vault_settings_for(openbao_server, token="not-a-token"))


def test_settings_without_a_login_are_refused() -> None:
    with pytest.raises(CredentialError, match="without a way to log in"):
        VaultCredentialStore(VaultSettings(url="http://127.0.0.1:1"))


async def test_short_ttl_token_is_renewed_in_the_background(openbao_server: OpenBaoServer) -> None:
    root = openbao_server.client()

    def short_token() -> str:
        auth = root.auth.token.create(policies=["root"], ttl="2s", explicit_max_ttl="120s", renewable=True)
        return str(auth["auth"]["client_token"])

    renewed = await VaultCredentialStore.connect(
        vault_settings_for(openbao_server, token=short_token(), renew_min_interval=0.2)
    )
    control = await VaultCredentialStore.connect(vault_settings_for(openbao_server, token=short_token()))
    await renewed.put("acct-1", "password", "p")

    async with anyio.create_task_group() as tg:
        tg.start_soon(renewed.run_renewal)
        await anyio.sleep(4.5)  # more than twice the token's TTL
        assert await renewed.get("acct-1", "password") == "p"
        assert renewed.connection.renewals >= 2
        tg.cancel_scope.cancel()

    with pytest.raises(CredentialError, match="refused the bridge's token"):  # the unrenewed token expired
        await control.get("acct-1", "password")


async def test_approle_logs_in_again_when_the_token_reaches_its_max_ttl(
    openbao_server: OpenBaoServer,
) -> None:
    allowed = f"ok-{uuid.uuid4().hex[:8]}"
    mount, role_id, secret_id = _setup_approle(openbao_server, allowed, token_ttl="2s", token_max_ttl="2s")
    settings = vault_settings_for(
        openbao_server,
        token=None,
        role_id=role_id,
        secret_id=secret_id,
        approle_mount=mount,
        prefix=allowed,
        renew_min_interval=0.2,
    )
    store = await VaultCredentialStore.connect(settings)
    await store.put("acct-1", "password", "p")
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run_renewal)
        await anyio.sleep(4.5)
        assert await store.get("acct-1", "password") == "p"
        assert store.connection.renewals >= 2
        tg.cancel_scope.cancel()


async def test_sealed_vault_gives_vault_unavailable_after_bounded_retries(
    fresh_openbao: OpenBaoServer,
) -> None:
    store = await VaultCredentialStore.connect(vault_settings_for(fresh_openbao, retry_attempts=4))
    await store.put("acct-1", "password", "p")
    fresh_openbao.seal()
    with structlog.testing.capture_logs() as logs, pytest.raises(VaultUnavailable, match="is sealed") as info:
        await store.get("acct-1", "password")
    assert "unseal" in (info.value.hint or "")
    assert [e["attempt"] for e in logs if e["event"] == "vault.retry"] == [1, 2, 3]
    with pytest.raises(VaultUnavailable):
        await store.encrypt("acct-1", b"x")


async def test_unreachable_vault_gives_vault_unavailable(fresh_openbao: OpenBaoServer) -> None:
    store = await VaultCredentialStore.connect(vault_settings_for(fresh_openbao))
    fresh_openbao.stop()
    with pytest.raises(VaultUnavailable, match="cannot reach Vault") as info:
        await store.put("acct-1", "password", "p")
    assert "url" in (info.value.hint or "")


async def test_vault_resolver_reads_configuration_references(
    vault_store: VaultCredentialStore, openbao_server: OpenBaoServer
) -> None:
    sub = f"cfg-{uuid.uuid4().hex[:8]}/xmpp"
    openbao_server.client().secrets.kv.v2.create_or_update_secret(
        path=sub, secret={"password": "s3cr3t", "n": 3}
    )
    resolver: VaultResolver = vault_store.resolver()
    assert await resolver.read(f"secret/{sub}", "password") == "s3cr3t"
    with pytest.raises(SecretReferenceError, match="does not exist"):
        await resolver.read(f"secret/{sub}", "missing")
    with pytest.raises(SecretReferenceError, match="does not exist"):
        await resolver.read("secret/no/such/path", "password")
    with pytest.raises(SecretReferenceError, match="is not text"):
        await resolver.read(f"secret/{sub}", "n")
    with pytest.raises(SecretReferenceError, match="needs a mount and a path"):
        await resolver.read("secret", "password")
