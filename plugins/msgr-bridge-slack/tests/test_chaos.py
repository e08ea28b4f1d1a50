"""Chaos, Slack inbound: the bridge as a subprocess (``msgr-bridge run``, SQLite), killed with SIGKILL at
random points and restarted while Bob posts into two conversations of the fake Slack hosted in this test
process. Envelopes not acknowledged before a kill come again on the next socket (as Slack retries them) and
the catch-up on connect fetches the rest: at the end every message is stored exactly once.

Outbound is not part of it: Slack refuses message metadata on user tokens, so a send in flight at a kill
cannot be recognised by its transaction id, and may reach Slack twice (docs/networks/slack.md).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from msgr_bridge.config import load_settings
from msgr_bridge.credentials.factory import build_credential_store
from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.testing import servers
from msgr_bridge.testing.fakes.slack import FakeSlack

pytestmark = pytest.mark.slow

SEED = 20261207
KILLS = 3
BATCH = 150
MESSAGES = KILLS * (BATCH + BATCH // 2)
ACCOUNT = "acc-slack-chaos"


async def stored(url: str, me: str) -> dict[str, int]:
    async with Database(url) as db, db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT remote_id, count(*) FROM messages WHERE network = 'slack' AND sender_id <> :me "
                "GROUP BY remote_id"
            ),
            {"me": me},
        )
        return {r[0]: int(r[1]) for r in rows.all()}


async def test_sigkill_chaos_inbound_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    async with FakeSlack() as fake:
        ws = fake.workspace
        me, bob = ws.add_user("me"), ws.add_user("bob")
        chans = [
            ws.create_channel("a", [me.id, bob.id]).id,
            ws.create_channel("b", [me.id, bob.id], "private").id,
        ]
        settings = load_settings(
            overrides={"bridge": {"data_dir": str(tmp_path / "data")}, "database": {"url": url}}
        )
        creds = await build_credential_store(settings)
        try:
            await creds.put(ACCOUNT, "token", ws.issue_token(me.id).value)
            await creds.put(ACCOUNT, "app_token", ws.issue_token(me.id, "app").value)
        finally:
            await creds.aclose()
        async with Database(url) as db:
            await db.migrate()
            await AccountRepo(db).create(
                Account(id=ACCOUNT, network="slack", remote_user_id=me.id),
                settings={"api_url": fake.base_url, "user_id": me.id},
            )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
            "MSGR_BRIDGE__DATABASE__URL": url,
            "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
            "MSGR_BRIDGE__API__PORT": str(servers.free_port()),
            "MSGR_BRIDGE__SYNC__INTERVAL_S": "2",
            "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
            "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "5",
            "MSGR_BRIDGE__NETWORKS__SLACK__HISTORY_PER_MINUTE": "6000",
            "MSGR_BRIDGE__NETWORKS__SLACK__HISTORY_PAGE_SIZE": "200",
        }
        posted: list[str] = []
        runs = 0
        proc: subprocess.Popen[bytes] | None = None

        def start() -> subprocess.Popen[bytes]:
            nonlocal runs
            runs += 1
            log = (tmp_path / f"bridge-{runs}.log").open("wb")
            started = subprocess.Popen(
                [sys.executable, "-m", "msgr_bridge.cli", "run"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            return started

        async def wait_exit(p: subprocess.Popen[bytes], timeout: float = 20) -> None:
            with anyio.fail_after(timeout):
                while p.poll() is None:  # noqa: ASYNC110 - a child process has no event to await
                    await anyio.sleep(0.05)

        async def post(n: int) -> None:
            for _ in range(n):
                posted.append(ws.post(chans[len(posted) % 2], bob.id, f"chaos {len(posted)}").ts)
                await anyio.sleep(0.01)

        async def connected() -> None:
            with anyio.fail_after(30):
                while not fake.sessions:  # noqa: ASYNC110 - the fake has no change signal
                    await anyio.sleep(0.02)

        with anyio.fail_after(150):
            for _ in range(KILLS):  # each round: posts while connected, a kill among them, posts while down
                proc = start()
                await connected()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(post, BATCH)
                    await anyio.sleep(rng.uniform(0.1, BATCH * 0.01))
                    proc.send_signal(signal.SIGKILL)
                    await wait_exit(proc)
                with anyio.fail_after(10):
                    while fake.sessions:  # noqa: ASYNC110 - the fake notices the dead socket
                        await anyio.sleep(0.02)
                await post(BATCH // 2)
            proc = start()
            try:
                for _ in range(600):
                    if set(posted) <= (await stored(url, me.id)).keys():
                        break
                    await anyio.sleep(0.2)
            finally:
                proc.send_signal(signal.SIGTERM)
                await wait_exit(proc)
    counts = await stored(url, me.id)
    missing = set(posted) - counts.keys()
    twice = {ts: n for ts, n in counts.items() if n != 1}
    assert not missing, f"{len(missing)} message(s) lost, e.g. {sorted(missing)[:5]}"
    assert not twice, f"{len(twice)} message(s) stored more than once"
    assert len(posted) == MESSAGES and runs == KILLS + 1
    assert fake.acks, "nothing arrived live: the bridge never ran its Slack socket"
    print(f"slack chaos: {runs} runs, {len(fake.acks)} acks, {len(fake.pushed)} envelopes pushed")
