"""Chaos: the bridge as a subprocess (``msgr-bridge run``), killed with SIGKILL at random points and
restarted, while remote users post thousands of messages on a loopback network hosted in this test process
(``RemoteNetworkServer``). At the end every remote message is stored exactly once and linked once.

Outbound: when the HTTP API has a send route (``POST /v1/accounts/{id}/conversations/{conv}/messages``), the
test also submits requests through it with a token created directly in the database, and checks that every
accepted request appears exactly once on the remote network (counted per ``txn_id``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from msgr_bridge_loopback import LoopbackNetwork
from msgr_bridge_loopback.remote import RemoteNetworkServer

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.testing import chaos, servers
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


async def prepare(url: str, tmp: Path, server: RemoteNetworkServer) -> str:
    """Create the account (secret in the keystore, settings naming the remote network) and an API token."""
    return await chaos.prepare_account(
        url,
        Account(id=ACCOUNT, network="loopback", remote_user_id="bridge"),
        settings={"url": server.url},
        secrets={"password": "pw-bridge"},
        data_dir=tmp / "data",
    )


def send_route_available() -> bool:
    try:
        from msgr_bridge.api.app import build_app  # noqa: F401
        from msgr_bridge.api.routes import messages  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


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
        port = str(servers.free_port())
        env = chaos.bridge_env(chaos_db, tmp_path / "data", port, sync_interval_s=2, extra=loopback_env())
        bridge = chaos.BridgeProcess(tmp_path, env)
        posted: list[str] = []
        outbound = send_route_available()
        accepted: list[str] = []

        async def post_all() -> None:
            for i in range(REMOTE_MESSAGES):
                conv = "g1" if i % 3 == 0 else "g2"
                members = senders[:2] if conv == "g1" else senders
                posted.append(net.post(conv, rng.choice(members), f"remote message {i}")["id"])
                if i % 25 == 24:
                    await anyio.sleep(0.02)

        async def send_all() -> None:
            await chaos.send_through_api(
                port, token, accepted, rng, OUTBOUND_REQUESTS, account=ACCOUNT, conversation="g2"
            )

        async def up_a_while(_: int) -> None:
            await anyio.sleep(rng.uniform(0.8, 4.0))

        with anyio.fail_after(150):
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_all)
                if outbound:
                    tg.start_soon(send_all)
                bridge.start()
                await chaos.kill_and_restart(bridge, rng, kills=KILLS, before_kill=up_a_while)

            # Everything posted; the last run catches up (redelivery of unacked pushes + sync history).
            async def caught_up() -> bool:
                counts = await chaos.stored_counts(chaos_db, "loopback", not_from="bridge")
                # and every accepted send delivered: one recovered from a kill waits for its echo
                # (``echo_grace_s``, 10 s) before it is resent
                delivered = _remote_txn_counts(net)
                return set(posted) <= counts.keys() and all(delivered.get(t) for t in accepted)

            try:
                await bridge.wait_for(caught_up, 0.2, tries=600)
            finally:
                await bridge.stop()

    counts = await chaos.stored_counts(chaos_db, "loopback", not_from="bridge")
    bad_links = await chaos.misfiled_links(chaos_db)
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
