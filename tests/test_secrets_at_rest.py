"""Nothing secret at rest in plaintext, end to end.

A known secret (a fresh canary) is a loopback user's password. The test links the account the way the API
does (the connector's link flow, ``LinkResult.secrets`` stored through ``ScopedSecrets``, the account row
created), runs the bridge (the connector logs in with the secret), sends and receives a message, and
provokes a failure (a second account whose stored password, a second canary, is wrong: it turns
``bad_credentials``). Then it scans the captured logs, a full dump of the database (SQLite: ``iterdump``
and the file's bytes; PostgreSQL: ``pg_dump``, or every row of every table when ``pg_dump`` cannot run),
and every file under the data directory (the keystore): neither canary appears, in plain text, base64 or
hex.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from msgr_bridge_loopback import LoopbackConnector
from msgr_bridge_loopback.network import LoopbackNetwork
from sqlalchemy import text

from msgr_bridge.app import Bridge
from msgr_bridge.config import Settings, load_settings
from msgr_bridge.connectors.protocol import LinkResult
from msgr_bridge.credentials import ScopedSecrets
from msgr_bridge.credentials.factory import build_credential_store
from msgr_bridge.schema import Account, ConnectionState, OutboundMessage
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import ALL_TABLES
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.testing import servers
from msgr_bridge.testing.config import with_loopback
from msgr_bridge.testing.leaks import assert_absent, captured_bridge_logs
from tests.conftest import create_database, drop_database, run_sync, with_database


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The bridge's real logging configuration at debug level, writing JSON to a buffer."""
    with captured_bridge_logs() as out:
        yield out


@pytest.fixture
def network() -> Iterator[LoopbackNetwork]:
    name = f"rest-{uuid.uuid4().hex[:8]}"
    yield LoopbackNetwork.get(name)
    LoopbackNetwork.reset(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own (the dump must hold this test's rows and nothing else)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
        return
    admin: str = request.getfixturevalue("pg_admin_url")
    name = servers.unique_name("msgr_rest")
    run_sync(lambda: create_database(admin, name))
    try:
        yield with_database(admin, name)
    finally:
        run_sync(lambda: drop_database(admin, name))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(name)
    return load_settings(
        overrides=with_loopback(
            {
                "bridge": {
                    "data_dir": str(tmp_path / "data"),
                    "tenant": f"rest-{uuid.uuid4().hex[:8]}",
                    "shutdown_timeout_s": 5,
                },
                "database": {"url": database_url},
                "logging": {"level": "debug"},
            }
        )
    )


async def link(settings: Settings, net: LoopbackNetwork, account_id: str, user: str, password: str) -> None:
    """What the linking service does: run the connector's flow, keep the secrets in the vault, store the
    account row (which holds no secret)."""
    flow = LoopbackConnector.link_flow({"network": net.name})
    await flow.start()
    result = await flow.submit({"user_id": user, "password": password})
    assert isinstance(result, LinkResult)
    store = await build_credential_store(settings)
    try:
        scoped = ScopedSecrets(store, account_id)
        for key, value in result.secrets.items():
            await scoped.put(key, value)
    finally:
        await store.aclose()
    async with Database(settings.database.url) as db:
        await AccountRepo(db).create(
            Account(
                id=account_id,
                tenant=settings.bridge.tenant,
                network="loopback",
                remote_user_id=result.remote_user_id,
                display_name=result.display_name,
            ),
            settings=result.settings,
        )


async def wait_for(check: Callable[[], bool], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 (polling the supervisor)
            await anyio.sleep(0.02)


async def count(db: Database, query: str) -> int:
    async with db.session() as s:
        return int((await s.execute(text(query))).scalar_one())


async def dump_database(url: str) -> bytes:
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        conn = sqlite3.connect(path)
        try:
            text = "\n".join(conn.iterdump())
        finally:
            conn.close()
        files = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        return text.encode() + files
    libpq_url = url.replace("postgresql+asyncpg://", "postgresql://")
    pg_dump = shutil.which("pg_dump")
    if pg_dump is not None:
        with anyio.fail_after(120):
            done = await anyio.run_process(
                [pg_dump, "--lock-wait-timeout=30s", "--dbname", libpq_url], check=False
            )
        if done.returncode == 0 and b"audit_log" in done.stdout:
            return done.stdout
    conn = await asyncpg.connect(libpq_url)  # pg_dump missing or of another major version
    try:
        rows = [repr(await conn.fetch(f"SELECT * FROM {t.name}")) for t in ALL_TABLES]
    finally:
        await conn.close()
    return "\n".join(rows).encode()


async def test_no_secret_at_rest_or_in_logs(
    settings: Settings, network: LoopbackNetwork, log_output: io.StringIO
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    network.add_user("alice", "Alice", password=canary)
    network.add_user("bob", "Bob", password=f"bob-{uuid.uuid4().hex}")
    network.add_user("dave", "Dave")
    async with Database(settings.database.url) as db:
        await db.migrate()

    await link(settings, network, "acct-alice", "alice", canary)
    await link(settings, network, "acct-bob", "bob", network.passwords["bob"])
    # bob's password is changed to a wrong one afterwards (as if rotated with a typo): a failure path
    store = await build_credential_store(settings)
    await ScopedSecrets(store, "acct-bob").put("password", wrong)
    await store.aclose()

    async with Bridge(settings).running(port=0) as bridge:
        sup = bridge.supervisor
        await wait_for(
            lambda: (
                sup.state("acct-alice") == ConnectionState.CONNECTED
                and sup.state("acct-bob") == ConnectionState.BAD_CREDENTIALS
            )
        )
        dm = network.direct("alice", "dave")
        connector = sup.connector("acct-alice")
        assert connector is not None
        sent = await connector.send_message(dm.id, OutboundMessage(txn_id="txn-1", text="hello dave"))
        assert network.messages[sent.remote_id]["text"] == "hello dave"
        network.post(dm.id, "dave", "hi alice")  # inbound, through the pipeline into the database
        with anyio.fail_after(15):
            while not await count(bridge.db, "SELECT count(*) FROM messages"):  # noqa: ASYNC110
                await anyio.sleep(0.02)
    async with Database(settings.database.url) as db:
        reads = await count(
            db, "SELECT count(*) FROM audit_log WHERE action = 'credential.read' AND target = 'acct-alice'"
        )
    assert reads == 1  # the secret was really read, and the read recorded once

    secrets = [canary, wrong]
    assert_absent(secrets, log_output.getvalue(), "the logs")
    assert "acct-alice" in log_output.getvalue()  # the logs were captured at all
    dump = await dump_database(settings.database.url)
    assert b"hi alice" in dump and b"acct-alice" in dump  # the dump really holds the bridge's rows
    assert_absent(secrets, dump, "the database")
    scanned = scan_files(Path(settings.bridge.data_dir), secrets)
    assert "keystore.json" in scanned


def scan_files(root: Path, secrets: list[str]) -> list[str]:
    """Check every file under ``root``; return their names."""
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        assert_absent(secrets, path.read_bytes(), str(path))
    return [p.name for p in files]
