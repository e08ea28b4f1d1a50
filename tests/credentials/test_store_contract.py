"""The behaviour every ``CredentialStore`` backend shares, run against the keystore and a real OpenBao."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from msgr_bridge.credentials import CredentialStore, ExpiringSecret, ScopedSecrets
from msgr_bridge.errors import CredentialAccessDenied, CredentialError, CredentialNotFound


async def test_put_get_rotate_delete(store: CredentialStore) -> None:
    assert await store.get_optional("acct-1", "password") is None
    await store.put("acct-1", "password", "hunter2")
    await store.put("acct-1", "token", "tok-1")
    assert await store.get("acct-1", "password") == "hunter2"
    assert await store.keys("acct-1") == ["password", "token"]

    await store.rotate("acct-1", "password", "hunter3")
    assert await store.get("acct-1", "password") == "hunter3"
    assert await store.get("acct-1", "token") == "tok-1"

    await store.delete("acct-1", "password")
    assert await store.get_optional("acct-1", "password") is None
    with pytest.raises(CredentialNotFound):
        await store.get("acct-1", "password")
    assert await store.keys("acct-1") == ["token"]
    await store.delete("acct-1", "password")  # deleting again is a no-op


async def test_rotate_refuses_a_missing_secret(store: CredentialStore) -> None:
    with pytest.raises(CredentialNotFound):
        await store.rotate("acct-1", "pasword", "typo")
    assert await store.keys("acct-1") == []


async def test_accounts_are_separate_and_delete_account_removes_all(store: CredentialStore) -> None:
    await store.put("acct-a", "password", "a-secret")
    await store.put("acct-b", "password", "b-secret")
    await store.put("acct-b", "cookie", "b-cookie")
    assert await store.get("acct-a", "password") == "a-secret"
    await store.delete_account("acct-b")
    assert await store.keys("acct-b") == []
    assert await store.get("acct-a", "password") == "a-secret"
    await store.delete_account("acct-b")  # already gone: no error


async def test_expiry_is_recorded_and_listed_soonest_first(store: CredentialStore) -> None:
    now = datetime.now(UTC)
    await store.put("acct-1", "token", "t", expires_at=now + timedelta(days=2))
    # A non-UTC offset is stored as the same instant.
    plus2 = timezone(timedelta(hours=2))
    await store.put("acct-2", "token", "t", expires_at=(now + timedelta(hours=1)).astimezone(plus2))
    await store.put("acct-3", "token", "t", expires_at=now + timedelta(days=30))
    await store.put("acct-4", "password", "never expires")

    soon = await store.expiring_before(now + timedelta(days=3))
    assert [(s.account_id, s.key) for s in soon] == [("acct-2", "token"), ("acct-1", "token")]
    assert soon[0] == ExpiringSecret("acct-2", "token", now + timedelta(hours=1))
    assert soon[0].expires_at.utcoffset() == timedelta(0)

    # Rotating without an expiry clears it.
    await store.rotate("acct-1", "token", "t2")
    soon = await store.expiring_before(now + timedelta(days=3))
    assert [(s.account_id, s.key) for s in soon] == [("acct-2", "token")]


async def test_naive_expiry_is_refused(store: CredentialStore) -> None:
    with pytest.raises(CredentialError, match="no time zone"):
        await store.put("acct-1", "token", "t", expires_at=datetime(2030, 1, 1))


async def test_blob_round_trip_is_bound_to_the_account(store: CredentialStore) -> None:
    blob = b"\x00session-file\xff" * 100
    token = await store.encrypt("acct-1", blob)
    assert isinstance(token, str) and token.isprintable()
    assert b"session-file" not in token.encode()
    assert await store.decrypt("acct-1", token) == blob
    assert await store.encrypt("acct-1", blob) != token  # fresh nonce every time
    with pytest.raises(CredentialError, match="cannot be decrypted for account 'acct-2'"):
        await store.decrypt("acct-2", token)


async def test_tampered_or_foreign_blob_is_an_error(store: CredentialStore) -> None:
    token = await store.encrypt("acct-1", b"data")
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(CredentialError):
        await store.decrypt("acct-1", tampered)
    with pytest.raises(CredentialError):
        await store.decrypt("acct-1", "not a blob at all")


@pytest.mark.parametrize(
    "crafted",
    ["../acct-b/password", "acct-b/password", "..", "../acct-b", "", "a/../../acct-b/password", "pass word"],
)
async def test_scoped_handle_cannot_reach_another_account(store: CredentialStore, crafted: str) -> None:
    await store.put("acct-b", "password", "b-secret")
    a = ScopedSecrets(store, "acct-a")
    with pytest.raises(CredentialAccessDenied):
        await a.get(crafted)
    with pytest.raises(CredentialAccessDenied):
        await a.get_optional(crafted)
    with pytest.raises(CredentialAccessDenied):
        await a.put(crafted, "overwrite")
    with pytest.raises(CredentialAccessDenied):
        await a.delete(crafted)
    assert await store.get("acct-b", "password") == "b-secret"


async def test_scoped_handle_reads_and_writes_only_its_account(store: CredentialStore) -> None:
    await store.put("acct-b", "password", "b-secret")
    a = ScopedSecrets(store, "acct-a")
    assert await a.get_optional("password") is None
    with pytest.raises(CredentialNotFound):
        await a.get("password")
    await a.put("password", "a-secret", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert await a.get("password") == "a-secret"
    assert await store.get("acct-b", "password") == "b-secret"
    await a.delete("password")
    assert await store.get_optional("acct-a", "password") is None
    assert await store.get("acct-b", "password") == "b-secret"


async def test_a_scoped_handle_needs_a_plain_account_id(store: CredentialStore) -> None:
    with pytest.raises(CredentialAccessDenied):
        ScopedSecrets(store, "../acct-b")
