"""Chaos with Microsoft Teams: the bridge as a subprocess receiving by change notifications (webhook mode,
the fake posting to the bridge's hook route), SIGKILLed at random points while people post on the Teams
fake (in this test process) and sends go in through the API. At the end every posted message is stored
exactly once, and every accepted send reached Teams exactly once: notifications lost while the bridge was
dead are made up by the catch-up each start does from the committed cursors, and a send cut off by a kill
is recognised by its echo (the pending send in keyed state) instead of being sent again."""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import anyio
import pytest
from msgr_bridge_teams.link import TeamsLinkFlow

from msgr_bridge.connectors.protocol import LinkResult
from msgr_bridge.schema import Account
from msgr_bridge.testing import chaos, servers
from msgr_bridge.testing.fakes.teams import FakeTeams

from .test_chaos import chaos_db

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
__all__ = ["chaos_db"]

SEED = 20261207
KILLS = 3
POSTED = 120
SENDS = 10
ACCOUNT = "acc-teams-chaos"


async def link(fake: FakeTeams, user: str) -> LinkResult:
    settings = {
        "client_id": fake.client_id,
        "tenant": fake.tenant_id,
        "authority_host": fake.base_url,
        "graph_url": fake.graph_url,
        "ca_file": str(fake.ca_file),
        "poll_min_s": 0.2,
        "poll_max_s": 1.0,
        "receive": "webhook",
        "webhook_poll_s": 5.0,
    }
    flow = TeamsLinkFlow(settings)
    await flow.start()
    fake.identity.approve_pending(user)
    result = await flow.submit({})
    assert isinstance(result, LinkResult)
    return result


async def prepare(url: str, tmp: Path, result: LinkResult) -> str:
    return await chaos.prepare_account(
        url,
        Account(id=ACCOUNT, network="teams", remote_user_id=result.remote_user_id),
        settings=result.settings,
        secrets=result.secrets,
        data_dir=tmp / "data",
    )


async def test_sigkill_chaos_with_teams_loses_and_duplicates_nothing(chaos_db: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with FakeTeams() as fake:
        alice, bob, carol = (fake.add_user(k, k.title()) for k in ("alice", "bob", "carol"))
        direct = fake.add_chat([alice, bob])
        group = fake.add_chat([alice, bob, carol], topic="chaos")
        result = await link(fake, alice)
        api_token = await prepare(chaos_db, tmp_path, result)
        port = str(servers.free_port())
        env = chaos.bridge_env(chaos_db, tmp_path / "data", port, sync_interval_s=3600)
        bridge = chaos.BridgeProcess(tmp_path, env)
        posted: list[str] = []
        accepted: list[str] = []

        async def post_all() -> None:
            for i in range(POSTED):
                chat = rng.choice((direct, group))
                who = bob if chat == direct else rng.choice((bob, carol))
                posted.append(fake.post_as(who, chat, f"<p>posted {i}</p>")["id"])
                await anyio.sleep(0.03)

        def delivered() -> dict[str, int]:
            counts: dict[str, int] = {}
            for m in fake.chats[direct]["messages"]:
                if m["from"]["user"]["id"] == alice:
                    key = m["body"]["content"].removeprefix("<p>").removesuffix("</p>")
                    counts[key] = counts.get(key, 0) + 1
            return counts

        runs = 0

        def subscribed_runs() -> int:
            """Runs that created or renewed their subscriptions (each start catches up, then subscribes)."""
            return sum(1 for r in fake.requests if r.path == "/v1.0/me" and r.method == "GET") - 1

        async def came_back() -> None:
            nonlocal runs
            runs += 1
            await bridge.wait_for(lambda: subscribed_runs() >= runs and bool(fake.subscriptions))

        async def caught_up() -> bool:
            counts = await chaos.stored_counts(chaos_db, "teams", not_from=alice)
            return set(posted) <= counts.keys() and all(delivered().get(t) for t in accepted)

        async def up_a_while(_: int) -> None:
            await anyio.sleep(rng.uniform(0.5, 2.5))

        async def start_live() -> None:
            bridge.start()
            await came_back()

        with anyio.fail_after(120):
            await start_live()
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
                        conversation=direct,
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

    counts = await chaos.stored_counts(chaos_db, "teams", not_from=alice)
    assert not set(posted) - counts.keys()
    assert {rid: n for rid, n in counts.items() if n != 1} == {}
    sent = delivered()
    assert {t: n for t, n in sent.items() if n != 1} == {}, "a send reached Teams more than once"
    assert len(accepted) == SENDS and set(accepted) <= sent.keys()
    notified = [d for d in fake.deliveries if d[1] == 202]
    assert notified, "nothing arrived by change notification"
    print(
        f"teams chaos: {bridge.runs} runs, {len(notified)} notifications taken, "
        f"{len(fake.deliveries) - len(notified)} lost to kills, {len(fake.graph_requests())} Graph requests"
    )
