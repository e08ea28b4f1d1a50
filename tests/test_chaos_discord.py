"""Chaos with Discord: the bridge as a subprocess, SIGKILLed at random points and restarted, while people
post on the Discord fake (in this test process) and sends go in through the API. At the end every posted
message is stored exactly once, and every accepted send reached Discord exactly once: RESUME replays what
was not acknowledged, and a resent bot message is dropped by Discord's ``enforce_nonce``."""

from __future__ import annotations

import os
import random
from functools import partial
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from msgr_bridge.config import load_settings
from msgr_bridge.credentials.factory import build_credential_store
from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing import servers
from msgr_bridge.testing.fakes.discord import DiscordFake

from .test_chaos import BridgeProcess, _send_through_api, chaos_db

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
__all__ = ["chaos_db"]  # the fixture, shared with test_chaos

SEED = 20261207
KILLS = 4
POSTED = 600
SENDS = 40
"""Sends go out at Discord's message rate (5 per 5 s per channel, declared by the connector)."""
ACCOUNT = "acc-discord-chaos"


async def prepare(url: str, tmp: Path, fake: DiscordFake, bot_id: str, token: str) -> str:
    settings = load_settings(overrides={"bridge": {"data_dir": str(tmp / "data")}, "database": {"url": url}})
    creds = await build_credential_store(settings)
    try:
        await creds.put(ACCOUNT, "token", token)
    finally:
        await creds.aclose()
    account_settings = {"api_base": fake.api_url, "gateway_url": fake.gateway_url, "backfill_messages": 0}
    async with Database(url) as db:
        await AccountRepo(db).create(
            Account(id=ACCOUNT, network="discord", remote_user_id=bot_id), settings=account_settings
        )
        api_token = await TokenStore(db).create(tenant="default", name="chaos", scopes=["admin:*"])
    return api_token.token


async def stored_counts(url: str, bot_id: str) -> dict[str, int]:
    async with Database(url) as db, db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT remote_id, count(*) FROM messages WHERE network = 'discord' AND sender_id <> :bot "
                "GROUP BY remote_id"
            ),
            {"bot": bot_id},
        )
        return {r[0]: int(r[1]) for r in rows.all()}


async def test_sigkill_chaos_with_discord_loses_and_duplicates_nothing(chaos_db: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with DiscordFake() as fake:
        bot, token = fake.add_bot("bridge")
        people = [fake.add_user(f"person{i}")["id"] for i in range(3)]
        guild = fake.add_guild("chaos", [bot["id"], *people])
        channels = [fake.add_channel(guild["id"], name)["id"] for name in ("a", "b")]
        api_token = await prepare(chaos_db, tmp_path, fake, bot["id"], token)
        port = str(servers.free_port())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
            "MSGR_BRIDGE__DATABASE__URL": chaos_db,
            "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
            "MSGR_BRIDGE__API__PORT": port,
            "MSGR_BRIDGE__SYNC__INTERVAL_S": "2",
            "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
            "MSGR_BRIDGE__LOGGING__FORMAT": "json",
            "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "5",
        }
        bridge = BridgeProcess(tmp_path, env)
        posted: list[str] = []
        accepted: list[str] = []

        async def post_all() -> None:
            for i in range(POSTED):
                posted.append(fake.post(rng.choice(channels), rng.choice(people), f"posted {i}")["id"])
                if i % 10 == 9:
                    await anyio.sleep(0.05)

        def delivered() -> dict[str, int]:
            counts: dict[str, int] = {}
            for m in fake.messages[channels[0]].values():
                if m["author"]["id"] == bot["id"]:
                    counts[m["content"]] = counts.get(m["content"], 0) + 1
            return counts

        sessions = 0

        async def came_back() -> None:
            """Wait until this run connected to the gateway (IDENTIFY or RESUME): every kill hits a live
            account, not one still importing its modules."""
            nonlocal sessions
            while fake.gateway.identifies + fake.gateway.resumes == sessions:
                assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                await anyio.sleep(0.1)
            sessions = fake.gateway.identifies + fake.gateway.resumes

        with anyio.fail_after(240):
            bridge.start()
            await came_back()
            await anyio.sleep(1.0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_all)
                tg.start_soon(
                    partial(
                        _send_through_api,
                        port,
                        api_token,
                        accepted,
                        rng,
                        SENDS,
                        account=ACCOUNT,
                        conversation=channels[0],
                        record="text",
                    )
                )
                for _ in range(KILLS):
                    await anyio.sleep(rng.uniform(0.2, 3.0))
                    assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                    await bridge.kill()
                    await anyio.sleep(rng.uniform(0.0, 0.5))
                    bridge.start()
                    await came_back()
            try:
                while True:
                    counts = await stored_counts(chaos_db, bot["id"])
                    if set(posted) <= counts.keys() and all(delivered().get(t) for t in accepted):
                        break
                    assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                    await anyio.sleep(0.3)
            finally:
                await bridge.stop()

    counts = await stored_counts(chaos_db, bot["id"])
    assert not set(posted) - counts.keys()
    assert {rid: n for rid, n in counts.items() if n != 1} == {}
    sent = delivered()
    assert {t: n for t, n in sent.items() if n != 1} == {}, "a send reached Discord more than once"
    assert len(accepted) == SENDS and set(accepted) <= sent.keys()
    gw = fake.gateway
    assert gw.identifies + gw.resumes >= KILLS + 1
    print(f"discord chaos: {bridge.runs} runs, {gw.identifies} identifies, {gw.resumes} resumes")
