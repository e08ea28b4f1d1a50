"""A database outage under load (issue 10, item 5): ``msgr-bridge run`` as a subprocess against a private
PostgreSQL the test stops for ten seconds while remote users post and API clients send through loopback.
The process stays up, ``/ready`` goes false during the outage and true after, and every remote message is
stored once and every accepted send reaches the network once."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp
import anyio
import pytest
from msgr_bridge_loopback import LoopbackNetwork
from msgr_bridge_loopback.remote import RemoteNetworkServer

from msgr_bridge.store.db import Database
from msgr_bridge.testing import chaos, servers
from msgr_bridge.testing.config import loopback_env
from msgr_bridge.testing.postgres import running_postgres

from .test_chaos import ACCOUNT, NET, _remote_txn_counts, prepare

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OUTAGE_S = 10.0
REMOTE_MESSAGES = 600
SENDS = 300


async def until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(120):
        while True:
            if predicate():
                return
            await anyio.sleep(0.2)


async def ready(http: aiohttp.ClientSession, port: str) -> bool | None:
    """True/False from ``/ready``; None when the API does not answer at all."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/ready", timeout=aiohttp.ClientTimeout(total=8)) as r:
            return r.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def test_a_database_outage_under_load_is_waited_out(tmp_path: Path) -> None:
    rng = random.Random(10)
    LoopbackNetwork.reset(NET)
    net = LoopbackNetwork.get(NET)
    net.add_user("bridge", "Bridge", password="pw-bridge")
    net.add_user("remote0", "Remote")
    net.create_group("g1", "Outage A", ["bridge", "remote0"])
    net.create_group("g2", "Outage B", ["bridge", "remote0"])

    with running_postgres() as pg:
        async with Database(pg.url) as db:
            await db.migrate()
        async with RemoteNetworkServer(net) as server:
            token = await prepare(pg.url, tmp_path, server)
            assert token is not None
            port = str(servers.free_port())
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
                "MSGR_BRIDGE__DATABASE__URL": pg.url,
                "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
                "MSGR_BRIDGE__API__PORT": port,
                "MSGR_BRIDGE__SYNC__INTERVAL_S": "2",
                "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
                "MSGR_BRIDGE__LOGGING__FORMAT": "json",
                **loopback_env(),  # the account is a loopback one: off unless configured
            }
            bridge = chaos.BridgeProcess(tmp_path, env)
            bridge.start()
            posted: list[str] = []
            accepted: list[str] = []
            seen_ready: list[bool | None] = []
            seqs: list[int] = []
            try:
                async with aiohttp.ClientSession() as http:
                    with anyio.fail_after(60):
                        while not await ready(http, port):
                            assert bridge.alive(), bridge.tail()
                            await anyio.sleep(0.2)

                    async def post_all() -> None:
                        for i in range(REMOTE_MESSAGES):
                            posted.append(net.post("g1", "remote0", f"during outage {i}")["id"])
                            await anyio.sleep(0.03)

                    async def stream() -> None:
                        """An event stream client: the hub's tail reads the log through the outage."""
                        headers = {"Authorization": f"Bearer {token}"}
                        url = f"http://127.0.0.1:{port}/v1/events?cursor=0"
                        while True:
                            if seqs:
                                headers["Last-Event-ID"] = str(seqs[-1])
                            try:
                                async with http.get(url, headers=headers, timeout=None) as r:
                                    async for line in r.content:
                                        if line.startswith(b"id: "):
                                            seqs.append(int(line[4:]))
                            except (aiohttp.ClientError, OSError, ValueError):
                                await anyio.sleep(0.5)

                    async def watch() -> None:
                        while True:
                            seen_ready.append(await ready(http, port))
                            await anyio.sleep(0.5)

                    with anyio.fail_after(150):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(post_all)
                            tg.start_soon(
                                partial(
                                    chaos.send_through_api,
                                    port,
                                    token,
                                    accepted,
                                    rng,
                                    SENDS,
                                    account=ACCOUNT,
                                    conversation="g2",
                                )
                            )
                            tg.start_soon(watch)
                            tg.start_soon(stream)
                            await anyio.sleep(3)
                            await anyio.to_thread.run_sync(pg.stop)
                            before = len(seen_ready)
                            await anyio.sleep(OUTAGE_S)
                            assert bridge.alive(), f"the bridge exited during the outage:\n{bridge.tail()}"
                            during = seen_ready[before:]
                            pg.start()  # (main thread: see RestartableServer.start)
                            streamed_before_restart = len(seqs)
                            await until(lambda: bool(seen_ready and seen_ready[-1]))
                            # wait for the senders, then for everything to arrive
                            await until(lambda: len(posted) == REMOTE_MESSAGES and len(accepted) == SENDS)
                            while True:
                                counts = await chaos.stored_counts(pg.url, "loopback", not_from="bridge")
                                delivered = _remote_txn_counts(net)
                                if set(posted) <= counts.keys() and all(delivered.get(t) for t in accepted):
                                    break
                                assert bridge.alive(), bridge.tail()
                                await anyio.sleep(0.3)
                            tg.cancel_scope.cancel()
                assert bridge.alive(), bridge.tail()
            finally:
                await bridge.stop()
            log = bridge.tail(100_000)

    assert False in during, f"/ready never went false during the outage: {during}"
    assert None not in during, "the API stopped answering during the outage"
    assert seen_ready[-1] is True
    missing = set(posted) - counts.keys()
    duplicated = {rid: n for rid, n in counts.items() if n != 1}
    assert not missing and not duplicated, (len(missing), len(duplicated))
    per_txn = _remote_txn_counts(net)
    assert all(per_txn.get(t) == 1 for t in accepted), "a send was lost or sent twice"
    assert not [t for t, n in per_txn.items() if n > 1]
    assert "database.unavailable" in log
    assert len(seqs) > streamed_before_restart, "the event stream stopped with the outage"
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs), "the event stream repeated or reordered"
