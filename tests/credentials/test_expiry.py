"""Credential expiry is never silent: a warning event, a metric and the account state before a credential
runs out, ``bad_credentials`` once it has; a login the network refuses turns the account
``bad_credentials`` too, visible through the supervisor and ``msgr-bridge accounts list``.

The watcher tests use a real keystore and the ``db`` fixture (SQLite and PostgreSQL); the Bridge tests run
the whole bridge with the loopback connector against a migrated SQLite file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import structlog.testing
from msgr_bridge_loopback.network import LoopbackNetwork

from msgr_bridge.app import Bridge
from msgr_bridge.cli import main
from msgr_bridge.config import Settings, load_settings
from msgr_bridge.credentials import LocalKeystore, ScopedSecrets
from msgr_bridge.credentials.expiry import ExpiryWatcher
from msgr_bridge.credentials.factory import build_credential_store
from msgr_bridge.observability.metrics import CREDENTIALS_EXPIRED, CREDENTIALS_EXPIRING, Metrics
from msgr_bridge.schema import Account, ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.testing.config import with_loopback
from msgr_bridge.testing.waiting import wait_until

NOW = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


class States:
    """A supervisor-like state setter that records every call and writes the repository like the Bridge."""

    def __init__(self, repo: AccountRepo) -> None:
        self.repo = repo
        self.calls: list[tuple[str, ConnectionState, str | None]] = []

    async def __call__(self, account_id: str, state: ConnectionState, reason: str | None) -> None:
        self.calls.append((account_id, state, reason))
        await self.repo.set_state(account_id, state, reason)


@pytest.fixture
def keystore(tmp_path: Path) -> LocalKeystore:
    return LocalKeystore.open(tmp_path / "keystore.json", key_file=tmp_path / "keystore.key")


async def make_account(repo: AccountRepo, account_id: str, *, tenant: str = "default") -> None:
    await repo.create(
        Account(id=account_id, tenant=tenant, network="loopback", remote_user_id=account_id),
        settings={"network": "expiry"},
    )


def watcher(
    keystore: LocalKeystore,
    repo: AccountRepo,
    states: States,
    metrics: Metrics,
    *,
    clock: Callable[[], datetime] = lambda: NOW,
    **kw: Any,
) -> ExpiryWatcher:
    return ExpiryWatcher(
        keystore, repo, states, warn_before=timedelta(days=7), metrics=metrics, clock=clock, **kw
    )


async def test_an_expiring_credential_warns_counts_and_sets_the_state(
    db: Database, keystore: LocalKeystore
) -> None:
    repo, metrics = AccountRepo(db), Metrics()
    states = States(repo)
    await make_account(repo, "acct-1")
    await make_account(repo, "acct-2")
    soon = NOW + timedelta(days=2)
    await keystore.put("acct-1", "token", "t-1", expires_at=soon)
    await keystore.put("acct-2", "token", "t-2", expires_at=NOW + timedelta(days=30))  # not yet
    with structlog.testing.capture_logs() as logs:
        findings = await watcher(keystore, repo, states, metrics).check_once()
    assert [(f.account_id, f.key, f.expired) for f in findings] == [("acct-1", "token", False)]
    events = [e for e in logs if e["event"] == "credentials.expiring"]
    assert len(events) == 1
    assert events[0]["log_level"] == "warning"
    assert (events[0]["account"], events[0]["key"]) == ("acct-1", "token")
    assert events[0]["expires_at"] == soon.isoformat()
    assert metrics.value(CREDENTIALS_EXPIRING) == 1
    record = await repo.get("acct-1")
    assert record is not None
    assert record.state == ConnectionState.CREDENTIALS_EXPIRING
    assert record.state_reason is not None and soon.isoformat() in record.state_reason
    assert record.credentials_expire_at == soon
    other = await repo.get("acct-2")
    assert other is not None and other.state == ConnectionState.STOPPED


async def test_warned_once_but_the_state_is_reasserted_after_a_reconnect(
    db: Database, keystore: LocalKeystore
) -> None:
    repo, metrics = AccountRepo(db), Metrics()
    states = States(repo)
    await make_account(repo, "acct-1")
    await keystore.put("acct-1", "password", "pw", expires_at=NOW + timedelta(hours=1))
    w = watcher(keystore, repo, states, metrics)
    with structlog.testing.capture_logs() as logs:
        await w.check_once()
        await w.check_once()  # nothing changed: no second warning, no second state write
        assert len(states.calls) == 1
        await repo.set_state("acct-1", ConnectionState.CONNECTED)  # the supervisor reconnected
        await w.check_once()
    assert [e["event"] for e in logs].count("credentials.expiring") == 1
    assert metrics.value(CREDENTIALS_EXPIRING) == 1
    assert [c[1] for c in states.calls] == [ConnectionState.CREDENTIALS_EXPIRING] * 2
    record = await repo.get("acct-1")
    assert record is not None and record.state == ConnectionState.CREDENTIALS_EXPIRING


async def test_an_expired_credential_turns_the_account_bad_credentials(
    db: Database, keystore: LocalKeystore
) -> None:
    repo, metrics = AccountRepo(db), Metrics()
    states = States(repo)
    await make_account(repo, "acct-1")
    await keystore.put("acct-1", "cookie", "c", expires_at=NOW - timedelta(minutes=1))
    await keystore.put("acct-1", "token", "t", expires_at=NOW + timedelta(days=1))
    with structlog.testing.capture_logs() as logs:
        findings = await watcher(keystore, repo, states, metrics).check_once()
    assert [(f.key, f.expired) for f in findings] == [("cookie", True), ("token", False)]
    assert [e["event"] for e in logs if e["event"].startswith("credentials.")] == [
        "credentials.expired",
        "credentials.expiring",
    ]
    assert metrics.value(CREDENTIALS_EXPIRED) == 1 and metrics.value(CREDENTIALS_EXPIRING) == 1
    record = await repo.get("acct-1")
    assert record is not None and record.state == ConnectionState.BAD_CREDENTIALS
    assert record.state_reason is not None and "'cookie' expired" in record.state_reason


async def test_bad_credentials_is_never_downgraded_to_expiring(db: Database, keystore: LocalKeystore) -> None:
    repo, metrics = AccountRepo(db), Metrics()
    states = States(repo)
    await make_account(repo, "acct-1")
    await repo.set_state("acct-1", ConnectionState.BAD_CREDENTIALS, "login refused")
    await keystore.put("acct-1", "password", "pw", expires_at=NOW + timedelta(days=1))
    await watcher(keystore, repo, states, metrics).check_once()
    assert states.calls == []
    record = await repo.get("acct-1")
    assert record is not None
    assert (record.state, record.state_reason) == (ConnectionState.BAD_CREDENTIALS, "login refused")
    assert metrics.value(CREDENTIALS_EXPIRING) == 1  # still warned and counted


async def test_a_renewed_credential_gives_back_the_supervisor_state(
    db: Database, keystore: LocalKeystore
) -> None:
    repo, metrics = AccountRepo(db), Metrics()
    states = States(repo)
    await make_account(repo, "acct-1")
    await keystore.put("acct-1", "token", "old", expires_at=NOW + timedelta(days=1))
    w = watcher(keystore, repo, states, metrics, current_state=lambda _: ConnectionState.CONNECTED)
    await w.check_once()
    await keystore.rotate("acct-1", "token", "new", expires_at=NOW + timedelta(days=90))
    assert await w.check_once() == []
    record = await repo.get("acct-1")
    assert record is not None
    assert (record.state, record.state_reason) == (ConnectionState.CONNECTED, "credentials renewed")
    assert record.credentials_expire_at is None


async def test_other_tenants_and_unknown_accounts_are_left_alone(
    db: Database, keystore: LocalKeystore
) -> None:
    repo, metrics = AccountRepo(db), Metrics()
    states = States(repo)
    await make_account(repo, "mine")
    await make_account(repo, "theirs", tenant="other")
    for account in ("mine", "theirs", "gone"):
        await keystore.put(account, "token", "t", expires_at=NOW + timedelta(days=1))
    findings = await watcher(keystore, repo, states, metrics, tenant="default").check_once()
    assert [f.account_id for f in findings] == ["mine"]
    assert [c[0] for c in states.calls] == ["mine"]
    assert metrics.value(CREDENTIALS_EXPIRING) == 1


async def test_run_checks_periodically_and_survives_a_failing_check(
    db: Database, keystore: LocalKeystore
) -> None:
    repo, metrics = AccountRepo(db), Metrics()
    states = States(repo)
    await make_account(repo, "acct-1")
    now = [NOW]
    w = watcher(keystore, repo, states, metrics, clock=lambda: now[0], interval=0.01)
    broken = True
    real = keystore.expiring_before

    async def flaky(when: datetime) -> Any:
        if broken:
            raise OSError("disk gone")
        return await real(when)

    keystore.expiring_before = flaky  # type: ignore[method-assign]
    await keystore.put("acct-1", "token", "t", expires_at=NOW + timedelta(days=10))
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(w.run)
            with anyio.fail_after(10):
                while not any(e["event"] == "credentials.expiry_check_failed" for e in logs):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                broken = False
                now[0] = NOW + timedelta(days=5)  # time passes: the token enters the warning window

                async def expiring() -> bool:
                    r = await repo.get("acct-1")
                    return r is not None and r.state == ConnectionState.CREDENTIALS_EXPIRING

                await wait_for(expiring)
            tg.cancel_scope.cancel()


def test_watcher_refuses_nonsense_settings(keystore: LocalKeystore) -> None:
    repo = AccountRepo(Database("sqlite://"))
    with pytest.raises(ValueError, match="warn_before"):
        ExpiryWatcher(keystore, repo, States(repo), warn_before=timedelta(days=-1))
    with pytest.raises(ValueError, match="interval"):
        ExpiryWatcher(keystore, repo, States(repo), warn_before=timedelta(days=1), interval=0)


# --- through the Bridge -----------------------------------------------------------------------------------


@pytest.fixture
def network() -> Iterator[LoopbackNetwork]:
    name = f"expiry-{uuid.uuid4().hex[:8]}"
    net = LoopbackNetwork.get(name)
    yield net
    LoopbackNetwork.reset(name)


@pytest.fixture
async def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    s = load_settings(
        overrides=with_loopback(
            {
                "bridge": {"data_dir": str(data), "shutdown_timeout_s": 5},
                "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"},
                "credentials": {"expiry_check_interval_s": 0.05, "expiry_warn_before_s": 86400},
                "sync": {"interval_s": 3600},
            }
        )
    )
    async with Database(s.database.url) as db:
        await db.migrate()
    return s


async def link(
    s: Settings, net: LoopbackNetwork, account_id: str, user: str, password: str, **kw: Any
) -> None:
    store = await build_credential_store(s)
    await ScopedSecrets(store, account_id).put("password", password, **kw)
    await store.aclose()
    async with Database(s.database.url) as db:
        await AccountRepo(db).create(
            Account(id=account_id, network="loopback", remote_user_id=user), settings={"network": net.name}
        )


async def wait_for(check: Callable[[], Any], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 (polling the database)
            await anyio.sleep(0.02)


async def test_a_refused_login_turns_the_account_bad_credentials_and_accounts_list_shows_it(
    settings: Settings, network: LoopbackNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    network.add_user("alice", password="right-password")
    network.add_user("bob", password="bobs-password")
    await link(settings, network, "acct-alice", "alice", "right-password")
    await link(settings, network, "acct-bob", "bob", "not-bobs-password")
    async with Bridge(settings).running(port=0) as bridge:

        async def settled() -> bool:
            return (
                bridge.supervisor.state("acct-bob") == ConnectionState.BAD_CREDENTIALS
                and bridge.supervisor.state("acct-alice") == ConnectionState.CONNECTED
            )

        await wait_for(settled)
        runtime = bridge.supervisor.runtime("acct-bob")
        assert runtime is not None and runtime.restarts == 0  # not retried blindly
        assert "refused the login" in (runtime.reason or "")
        health = await bridge.health()
        assert health["accounts"]["acct-bob"]["state"] == "bad_credentials"

    s = settings
    cfg = Path(str(s.bridge.data_dir)).parent / "cli.toml"
    cfg.write_text(f'[bridge]\ndata_dir = "{s.bridge.data_dir}"\n[database]\nurl = "{s.database.url}"\n')
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, ["--config", str(cfg), "accounts", "list", "--json"])
    assert code == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["acct-bob"]["state"] == "bad_credentials"
    assert "refused the login" in rows["acct-bob"]["state_reason"]
    assert rows["acct-alice"]["state"] == "stopped"  # stopped cleanly with the bridge


async def test_the_bridge_runs_the_watcher(settings: Settings, network: LoopbackNetwork) -> None:
    network.add_user("carol", password="carols-password")
    soon = datetime.now(UTC) + timedelta(hours=2)
    await link(settings, network, "acct-carol", "carol", "carols-password", expires_at=soon)
    async with Bridge(settings).running(port=0) as bridge:

        async def expiring() -> bool:
            record = await bridge.accounts.get("acct-carol")
            return record is not None and record.state == ConnectionState.CREDENTIALS_EXPIRING

        await wait_for(expiring)
        assert bridge.metrics.value(CREDENTIALS_EXPIRING) == 1
        record = await bridge.accounts.get("acct-carol")
        assert record is not None and record.credentials_expire_at == soon
        # the connection itself is fine (it may still be coming up): the warning is about the future
        await wait_until(lambda: bridge.supervisor.state("acct-carol") == ConnectionState.CONNECTED)
