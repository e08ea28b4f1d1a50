"""Chaos: the bridge as a subprocess (``msgr-bridge run``), killed with SIGKILL at random points and
restarted, while remote users post thousands of messages on a loopback network hosted in this test process
(``RemoteNetworkServer``). At the end every remote message is stored exactly once and linked once.

Outbound: when the HTTP API has a send route (``POST /v1/accounts/{id}/conversations/{conv}/messages``), the
test also submits requests through it with a token created directly in the database, and checks that every
accepted request appears exactly once on the remote network (counted per ``txn_id``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import anyio
import pytest
from msgr_bridge_loopback import LoopbackNetwork
from msgr_bridge_loopback.remote import RemoteNetworkServer
from sqlalchemy import text

from msgr_bridge.config import load_settings
from msgr_bridge.credentials.factory import build_credential_store
from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing import servers
from msgr_bridge.testing.config import loopback_env

from .conftest import create_database, drop_database, with_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SEED = 20240611
KILLS = 5
REMOTE_MESSAGES = 3000
OUTBOUND_REQUESTS = 1000
ACCOUNT = "acc-chaos"
NET = "chaos"


@pytest.fixture
async def chaos_db(pg_admin_url: str) -> AsyncIterator[str]:
    name = servers.unique_name("msgr_chaos")
    await create_database(pg_admin_url, name)
    url = with_database(pg_admin_url, name)
    try:
        async with Database(url) as db:
            await db.migrate()
        yield url
    finally:
        await drop_database(pg_admin_url, name)


class BridgeProcess:
    """``msgr-bridge run`` in a subprocess, configured through MSGR_BRIDGE__* variables only."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.tmp / f"bridge-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "msgr_bridge.cli", "run"],
            cwd=self.tmp,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        await self._wait()

    async def stop(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        await self._wait(20)

    async def _wait(self, timeout: float = 10) -> None:
        assert self.proc is not None
        with anyio.fail_after(timeout):
            for _ in range(1_000_000):
                if self.proc.poll() is not None:
                    return
                await anyio.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        path = self.tmp / f"bridge-{self.runs}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


async def prepare(url: str, tmp: Path, server: RemoteNetworkServer) -> str | None:
    """Create the account (secret in the keystore, settings naming the remote network) and an API token."""
    settings = load_settings(overrides={"bridge": {"data_dir": str(tmp / "data")}, "database": {"url": url}})
    creds = await build_credential_store(settings)
    try:
        await creds.put(ACCOUNT, "password", "pw-bridge")
    finally:
        await creds.aclose()
    async with Database(url) as db:
        await AccountRepo(db).create(
            Account(id=ACCOUNT, network="loopback", remote_user_id="bridge"), settings={"url": server.url}
        )
        token = await TokenStore(db).create(tenant="default", name="chaos", scopes=["admin:*"])
    return getattr(token, "token", None)


def send_route_available() -> bool:
    try:
        from msgr_bridge.api.app import build_app  # noqa: F401
        from msgr_bridge.api.routes import messages  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


async def stored_counts(url: str) -> tuple[dict[str, int], int]:
    """(rows per remote id of messages from remote users, links that are not one per message)."""
    async with Database(url) as db, db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT remote_id, count(*) FROM messages WHERE network = 'loopback' "
                    "AND sender_id <> 'bridge' GROUP BY remote_id"
                )
            )
        ).all()
        bad_links = await conn.scalar(
            text(
                "SELECT count(*) FROM (SELECT message_id FROM message_accounts GROUP BY message_id "
                "HAVING count(*) <> 1) x"
            )
        )
    return {r[0]: int(r[1]) for r in rows}, int(bad_links or 0)


async def test_sigkill_chaos_loses_and_duplicates_nothing(chaos_db: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    LoopbackNetwork.reset(NET)
    net = LoopbackNetwork.get(NET)
    net.add_user("bridge", "Bridge", password="pw-bridge")
    senders = [f"remote{i}" for i in range(4)]
    for s in senders:
        net.add_user(s, s.title())
    net.create_group("g1", "Chaos A", ["bridge", *senders[:2]])
    net.create_group("g2", "Chaos B", ["bridge", *senders])

    async with RemoteNetworkServer(net) as server:
        token = await prepare(chaos_db, tmp_path, server)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
            "MSGR_BRIDGE__DATABASE__URL": chaos_db,
            "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
            "MSGR_BRIDGE__API__PORT": str(servers.free_port()),
            "MSGR_BRIDGE__SYNC__INTERVAL_S": "2",
            "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
            "MSGR_BRIDGE__LOGGING__FORMAT": "json",
            "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "5",
            **loopback_env(),
        }
        bridge = BridgeProcess(tmp_path, env)
        posted: list[str] = []
        outbound = send_route_available() and token is not None
        accepted: list[str] = []

        async def post_all() -> None:
            for i in range(REMOTE_MESSAGES):
                conv = "g1" if i % 3 == 0 else "g2"
                members = senders[:2] if conv == "g1" else senders
                posted.append(net.post(conv, rng.choice(members), f"remote message {i}")["id"])
                if i % 25 == 24:
                    await anyio.sleep(0.02)

        async def send_all(port: str) -> None:
            await _send_through_api(port, token or "", accepted, rng)

        with anyio.fail_after(150):
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_all)
                if outbound:
                    tg.start_soon(send_all, env["MSGR_BRIDGE__API__PORT"])
                for _ in range(KILLS):
                    bridge.start()
                    await anyio.sleep(rng.uniform(0.8, 4.0))
                    assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                    await bridge.kill()
                    await anyio.sleep(rng.uniform(0.0, 0.5))
                bridge.start()
            # Everything posted; the last run catches up (redelivery of unacked pushes + sync history).
            try:
                expected = set(posted)
                for _ in range(600):
                    counts, _ = await stored_counts(chaos_db)
                    # and every accepted send delivered: one recovered from a kill waits for its echo
                    # (``echo_grace_s``, 10 s) before it is resent
                    delivered = _remote_txn_counts(net)
                    if expected <= counts.keys() and all(delivered.get(t) for t in accepted):
                        break
                    assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                    await anyio.sleep(0.2)
            finally:
                await bridge.stop()

    counts, bad_links = await stored_counts(chaos_db)
    missing = set(posted) - counts.keys()
    duplicated = {rid: n for rid, n in counts.items() if n != 1}
    assert not missing, f"{len(missing)} remote message(s) lost, e.g. {sorted(missing)[:5]}"
    assert not duplicated, f"{len(duplicated)} remote message(s) stored more than once"
    assert bad_links == 0
    assert len(posted) == REMOTE_MESSAGES and bridge.runs == KILLS + 1
    assert server.logins >= 2  # some kills land during start-up, before the account logged in
    print(f"chaos: {bridge.runs} runs, {server.logins} logins, {server.pushed} pushes, {server.acked} acked")
    if outbound:
        per_txn = _remote_txn_counts(net)
        lost = [t for t in accepted if per_txn.get(t, 0) == 0]
        twice = {t: n for t, n in per_txn.items() if n > 1}
        assert not lost, f"{len(lost)} accepted outbound request(s) never reached the network"
        assert not twice, f"{len(twice)} outbound request(s) reached the network more than once"


def _remote_txn_counts(net: LoopbackNetwork) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in net.log:
        if p.get("type") == "message" and p.get("txn_id"):
            out[p["txn_id"]] = out.get(p["txn_id"], 0) + 1
    return out


async def _send_through_api(
    port: str,
    token: str,
    accepted: list[str],
    rng: random.Random,
    count: int = OUTBOUND_REQUESTS,
    *,
    account: str = ACCOUNT,
    conversation: str = "g2",
    record: Literal["txn_id", "text"] = "txn_id",
) -> None:
    """POST sends while the bridge comes and goes; a request is accepted once the API answered 2xx.

    Each request carries an idempotency key and is retried until accepted (a kill mid-request leaves the
    client unsure, as a real client would be); the key makes the retry safe. ``accepted`` gets each
    accepted send's transaction id, or its text (``record="text"``) for networks matched by what arrived.
    """
    url = (
        f"http://127.0.0.1:{port}/v1/accounts/{account}/conversations/{quote(conversation, safe='')}/messages"
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            body: dict[str, Any] = {"text": f"outbound {i}", "idempotency_key": f"chaos-{i}"}
            while True:
                try:
                    async with http.post(url, json=body, headers=headers) as resp:
                        if resp.status < 300:
                            data = await resp.json()
                            txn = data.get("txn_id") or data.get("entry", {}).get("txn_id")
                            accepted.append(body["text"] if record == "text" else str(txn))
                            break
                        assert resp.status >= 500 or resp.status == 503, await resp.text()
                except (aiohttp.ClientError, OSError):
                    pass
                await anyio.sleep(0.05)
            if rng.random() < 0.1:
                await anyio.sleep(0.01)
