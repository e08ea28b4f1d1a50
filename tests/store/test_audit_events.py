"""The audit entries the core writes itself: credential access (first read per process, every write and
delete, fail closed) and configuration changes at startup."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from msgr_bridge.config import load_settings
from msgr_bridge.credentials import LocalKeystore, ScopedSecrets
from msgr_bridge.errors import TransientError
from msgr_bridge.store import audit
from msgr_bridge.store.audit_events import CredentialAudit, config_digest, record_config_change
from msgr_bridge.store.db import Database


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(name)


async def entries(db: Database) -> list[audit.AuditEntry]:
    async with db.session() as s:
        return await audit.entries(s)


async def test_first_read_per_account_and_key_is_audited_once(db: Database, tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path / "ks.json", key_file=tmp_path / "ks.key")
    await store.put("acct-1", "password", "s3cret-value")
    await store.put("acct-1", "token", "t0ken-value")
    recorder = CredentialAudit(db)
    handle = recorder.wrap(ScopedSecrets(store, "acct-1"), account_id="acct-1", actor="connector:loopback")
    again = recorder.wrap(ScopedSecrets(store, "acct-1"), account_id="acct-1", actor="connector:loopback")
    assert await handle.get("password") == "s3cret-value"
    assert await again.get("password") == "s3cret-value"  # a reconnect: same process, not audited again
    assert await handle.get_optional("missing") is None  # nothing handed out, nothing recorded
    assert await handle.get_optional("token") == "t0ken-value"
    rows = await entries(db)
    assert [(r.actor, r.action, r.target, r.details["key"]) for r in rows] == [
        ("connector:loopback", "credential.read", "acct-1", "password"),
        ("connector:loopback", "credential.read", "acct-1", "token"),
    ]
    # a new process (a new recorder) records its first read again
    await (
        CredentialAudit(db)
        .wrap(ScopedSecrets(store, "acct-1"), account_id="acct-1", actor="connector:loopback")
        .get("password")
    )
    assert len(await entries(db)) == 3


async def test_writes_and_deletes_are_audited_every_time_without_the_value(
    db: Database, tmp_path: Path
) -> None:
    store = LocalKeystore.open(tmp_path / "ks.json", key_file=tmp_path / "ks.key")
    handle = CredentialAudit(db).wrap(
        ScopedSecrets(store, "acct-1"), account_id="acct-1", actor="connector:x"
    )
    expires = datetime(2031, 1, 1, tzinfo=UTC)
    await handle.put("token", "refreshed-secret-1", expires_at=expires)
    await handle.put("token", "refreshed-secret-2")
    await handle.delete("token")
    rows = await entries(db)
    assert [r.action for r in rows] == ["credential.write", "credential.write", "credential.delete"]
    assert rows[0].details == {"key": "token", "expires_at": audit.iso(expires)}
    assert "refreshed-secret" not in repr(rows)
    async with db.session() as s:
        assert (await audit.verify(s)).ok


async def test_a_read_that_cannot_be_audited_fails_and_is_retried(tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path / "ks.json", key_file=tmp_path / "ks.key")
    await store.put("acct-1", "password", "pw-value")
    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    await db.connect()
    await db.migrate()
    recorder = CredentialAudit(db)
    handle = recorder.wrap(ScopedSecrets(store, "acct-1"), account_id="acct-1", actor="connector:x")
    await db.close()
    with pytest.raises(TransientError) as info:
        await handle.get("password")
    assert "audit log" in str(info.value) and "pw-value" not in str(info.value)
    await db.connect()
    try:
        assert await handle.get("password") == "pw-value"  # not marked as seen: audited now
        assert [r.action for r in await entries(db)] == ["credential.read"]
    finally:
        await db.close()


async def test_config_changes_are_recorded_only_when_the_config_changes(db: Database, tmp_path: Path) -> None:
    first = load_settings(overrides={"bridge": {"data_dir": str(tmp_path)}})
    digest = await record_config_change(db, first)
    assert digest == config_digest(first)
    assert await record_config_change(db, first) is None  # a restart with the same config
    assert (
        await record_config_change(db, load_settings(overrides={"bridge": {"data_dir": str(tmp_path)}}))
        is None
    )
    changed = load_settings(overrides={"bridge": {"data_dir": str(tmp_path)}, "sync": {"interval_s": 60}})
    second = await record_config_change(db, changed)
    assert second is not None and second != digest
    rows = await entries(db)
    assert [(r.action, r.actor) for r in rows] == [("config.changed", "system")] * 2
    assert rows[0].details == {"sha256": digest, "previous_sha256": None}
    assert rows[1].details == {"sha256": second, "previous_sha256": digest}
    assert rows[0].target == "(defaults and environment)"


def test_the_config_digest_is_stable_and_follows_the_config() -> None:
    a = load_settings(overrides={"bridge": {"data_dir": "/srv/a"}})
    assert config_digest(a) == config_digest(load_settings(overrides={"bridge": {"data_dir": "/srv/a"}}))
    assert config_digest(a) != config_digest(load_settings(overrides={"bridge": {"data_dir": "/srv/b"}}))
    assert len(config_digest(a)) == 64
