"""Chaos with Discord: the bridge as a subprocess, SIGKILLed at random points and restarted, while people
post on the Discord fake (in this test process) and sends go in through the API. At the end every posted
message is stored exactly once, and every accepted send reached Discord exactly once: RESUME replays what
was not acknowledged, and a resent bot message is dropped by Discord's ``enforce_nonce``."""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import anyio
import pytest

from msgr_bridge.schema import Account
from msgr_bridge.testing import chaos, servers
from msgr_bridge.testing.fakes.discord import DiscordFake

from .test_chaos import chaos_db

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
__all__ = ["chaos_db"]  # the fixture, shared with test_chaos

SEED = 20261207
KILLS = 4
POSTED = 600
SENDS = 40
"""Sends go out at Discord's message rate (5 per 5 s per channel, declared by the connector)."""
ACCOUNT = "acc-discord-chaos"


async def prepare(url: str, tmp: Path, fake: DiscordFake, bot_id: str, token: str) -> str:
    return await chaos.prepare_account(
        url,
        Account(id=ACCOUNT, network="discord", remote_user_id=bot_id),
        settings={"api_base": fake.api_url, "gateway_url": fake.gateway_url, "backfill_messages": 0},
        secrets={"token": token},
        data_dir=tmp / "data",
    )


async def test_sigkill_chaos_with_discord_loses_and_duplicates_nothing(chaos_db: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with DiscordFake() as fake:
        bot, token = fake.add_bot("bridge")
        people = [fake.add_user(f"person{i}")["id"] for i in range(3)]
        guild = fake.add_guild("chaos", [bot["id"], *people])
        channels = [fake.add_channel(guild["id"], name)["id"] for name in ("a", "b")]
        api_token = await prepare(chaos_db, tmp_path, fake, bot["id"], token)
        port = str(servers.free_port())
        env = chaos.bridge_env(chaos_db, tmp_path / "data", port, sync_interval_s=2)
        bridge = chaos.BridgeProcess(tmp_path, env)
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
            await bridge.wait_for(lambda: fake.gateway.identifies + fake.gateway.resumes != sessions)
            sessions = fake.gateway.identifies + fake.gateway.resumes

        async def caught_up() -> bool:
            counts = await chaos.stored_counts(chaos_db, "discord", not_from=bot["id"])
            return set(posted) <= counts.keys() and all(delivered().get(t) for t in accepted)

        async def up_a_while(_: int) -> None:
            await anyio.sleep(rng.uniform(0.2, 3.0))

        async def start_live() -> None:
            bridge.start()
            await came_back()

        with anyio.fail_after(240):
            await start_live()
            await anyio.sleep(1.0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_all)
                tg.start_soon(
                    partial(
                        chaos.send_through_api,
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
                await chaos.kill_and_restart(
                    bridge, rng, kills=KILLS, before_kill=up_a_while, restart=start_live
                )
            try:
                await bridge.wait_for(caught_up, 0.3)
            finally:
                await bridge.stop()

    counts = await chaos.stored_counts(chaos_db, "discord", not_from=bot["id"])
    assert not set(posted) - counts.keys()
    assert {rid: n for rid, n in counts.items() if n != 1} == {}
    sent = delivered()
    assert {t: n for t, n in sent.items() if n != 1} == {}, "a send reached Discord more than once"
    assert len(accepted) == SENDS and set(accepted) <= sent.keys()
    gw = fake.gateway
    assert gw.identifies + gw.resumes >= KILLS + 1
    print(f"discord chaos: {bridge.runs} runs, {gw.identifies} identifies, {gw.resumes} resumes")
