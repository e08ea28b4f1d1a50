"""Memory of linked Teams accounts: RSS growth with N connectors connected and polling the Teams fake.

    python bench/teams_rss.py [--accounts 100] [--seconds 10]

The fake runs in a child process (its server-side TLS buffers, 128 KiB per connection, would otherwise be
counted); the accounts are linked before the baseline, so the growth is the connectors': per account, one
msal application with its token cache and ``requests`` session, one aiohttp session with its TLS
connection, the poller's bounded state. Printed: baseline RSS, RSS with the accounts polling, and the
growth per account.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys

from msgr_bridge_teams import TeamsConnector
from msgr_bridge_teams.link import TeamsLinkFlow

from msgr_bridge.connectors.protocol import LinkResult
from msgr_bridge.testing.fakes import make_context
from msgr_bridge.testing.fakes.teams import FakeTeams
from msgr_bridge.testing.harness import Live


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def serve_fake(accounts: int) -> None:
    """The child: a tenant of ``accounts`` users, each device code approved for the next unlinked one."""
    async with FakeTeams() as fake:
        peer = fake.add_user("peer", "Peer")
        users = []
        for i in range(accounts):
            users.append(fake.add_user(f"user{i}", f"User {i}"))
            fake.post_as(peer, fake.add_chat([users[-1], peer]), f"<p>hello {i}</p>")
        keys = {
            "client_id": fake.client_id,
            "tenant": fake.tenant_id,
            "authority_host": fake.base_url,
            "graph_url": fake.graph_url,
            "ca_file": str(fake.ca_file),
        }
        print(json.dumps(keys), flush=True)
        while users:
            if fake.identity.approve_pending(users[0]):
                users.pop(0)
            fake.identity.approve_next = None
            await asyncio.sleep(0.01)
        await asyncio.sleep(3600)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        await serve_fake(args.accounts)
        return
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-fake",
        "--accounts",
        str(args.accounts),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        settings = {**json.loads(await child.stdout.readline()), "poll_min_s": 1, "poll_max_s": 5}
        results: list[LinkResult] = []
        for _ in range(args.accounts):
            flow = TeamsLinkFlow(settings)
            await flow.start()
            while not isinstance(result := await flow.submit({}), LinkResult):  # noqa: ASYNC110 - polling, as an API client does
                await asyncio.sleep(0.02)
            results.append(result)
        gc.collect()
        base = rss_mib()
        lives = []
        for result in results:
            ctx = make_context(
                "teams",
                account_id=f"acct-{result.remote_user_id}",
                settings=result.settings,
                remote_user_id=result.remote_user_id,
                secrets=result.secrets,
            )
            lives.append(await Live(TeamsConnector(ctx)).start())
        await asyncio.sleep(args.seconds)
        gc.collect()
        loaded = rss_mib()
        for live in lives:
            await live.stop()
    finally:
        child.terminate()
        await child.wait()
    print(
        f"accounts={args.accounts} baseline_rss_mib={base:.1f} polling_rss_mib={loaded:.1f} "
        f"per_account_kib={(loaded - base) * 1024 / args.accounts:.0f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
