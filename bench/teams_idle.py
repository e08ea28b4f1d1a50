"""Graph requests per minute an idle Teams account costs, polling or with change notifications, from the
Teams fake's request log.

    python bench/teams_idle.py [--chats 1 10 50] [--scale 20] [--minutes 5] [--mode poll|webhook]

``--mode webhook`` receives by change notifications through the hook route (``msgr_bridge.testing.hooks``)
with the defaults ``webhook_poll_s = 300`` and ``subscription_s = 3300`` scaled the same way; measure at least
an hour (``--minutes 60``, ``--scale 60``) so that subscription renewals are in the count.

Time is scaled: the poller runs with ``poll_min_s``/``poll_max_s`` (defaults 5 s and 60 s) divided by
``scale``, for ``minutes`` scaled minutes after it settled; the count does not depend on the scale because
only the number of rounds matters, as long as request latency stays small against the scaled interval (at
scale 100 on a loaded machine it does not: keep the scale near 20). Printed per chat count: Graph requests
per minute. Token renewals are not scaled (msal renews 5 minutes before expiry whatever the lifetime), so
they are not measured here: one renewal per access token lifetime (60-90 minutes on Azure AD).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from contextlib import AsyncExitStack

from msgr_bridge_teams import TeamsConnector
from msgr_bridge_teams.link import TeamsLinkFlow

from msgr_bridge.connectors.protocol import LinkResult
from msgr_bridge.sdk.hooks import HookRegistry
from msgr_bridge.testing.fakes import make_context
from msgr_bridge.testing.fakes.teams import FakeTeams
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.hooks import serve_hooks


async def measure(chats: int, scale: float, minutes: float, mode: str = "poll") -> float:
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeTeams())
        registry = HookRegistry(None)
        if mode == "webhook":
            await stack.enter_async_context(serve_hooks(registry))
        me = fake.add_user("me", "Me")
        for i in range(chats):
            other = fake.add_user(f"u{i}", f"User {i}")
            fake.add_chat([me, other])
        settings = {
            "client_id": fake.client_id,
            "tenant": fake.tenant_id,
            "authority_host": fake.base_url,
            "graph_url": fake.graph_url,
            "ca_file": str(fake.ca_file),
            "poll_min_s": 5 / scale,
            "poll_max_s": 60 / scale,
            "receive": mode,
            "webhook_poll_s": 300 / scale,
            "subscription_s": max(1.0, 3300 / scale),
        }
        flow = TeamsLinkFlow(settings)
        await flow.start()
        fake.identity.approve_pending(me)
        result = await flow.submit({})
        assert isinstance(result, LinkResult)
        ctx = make_context(
            "teams",
            remote_user_id=result.remote_user_id,
            settings=result.settings,
            secrets=result.secrets,
            hooks=registry.for_account("teams", "acct-1"),
        )
        async with Live(TeamsConnector(ctx)):
            await asyncio.sleep(60 * 2 / scale)  # settle: the interval has grown to poll_max_s
            start = time.time()
            await asyncio.sleep(60 * minutes / scale)
            graph = len(fake.graph_requests(start))
        return graph / minutes


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--scale", type=float, default=20)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--mode", choices=("poll", "webhook"), default="poll")
    args = parser.parse_args()
    print(f"chats  graph_requests_per_min ({args.mode})")
    figures = {}
    for chats in args.chats:
        figures[chats] = round(await measure(chats, args.scale, args.minutes, args.mode), 2)
        print(f"{chats:5d}  {figures[chats]:22.2f}")
    print(json.dumps({"mode": args.mode, "graph_requests_per_min": figures}))


if __name__ == "__main__":
    asyncio.run(main())
