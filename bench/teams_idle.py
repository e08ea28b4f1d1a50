"""Graph requests per minute an idle Teams account costs in polling mode, from the Teams fake's request log.

    python bench/teams_idle.py [--chats 1 10 50] [--scale 20] [--minutes 5]

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
import time

from msgr_bridge_teams import TeamsConnector
from msgr_bridge_teams.link import TeamsLinkFlow

from msgr_bridge.connectors.protocol import LinkResult
from msgr_bridge.testing.fakes import make_context
from msgr_bridge.testing.fakes.teams import FakeTeams
from msgr_bridge.testing.harness import Live


async def measure(chats: int, scale: float, minutes: float) -> float:
    async with FakeTeams() as fake:
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
        }
        flow = TeamsLinkFlow(settings)
        await flow.start()
        fake.identity.approve_pending(me)
        result = await flow.submit({})
        assert isinstance(result, LinkResult)
        ctx = make_context(
            "teams", remote_user_id=result.remote_user_id, settings=result.settings, secrets=result.secrets
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
    args = parser.parse_args()
    print("chats  graph_requests_per_min")
    for chats in args.chats:
        print(f"{chats:5d}  {await measure(chats, args.scale, args.minutes):22.1f}")


if __name__ == "__main__":
    asyncio.run(main())
