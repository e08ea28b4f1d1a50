"""Memory of linked Discord accounts: RSS with N connected bots (gateway + REST each) against the fake.

Each account is its own bot on the Discord fake, in a guild with three channels; each connector connects
(REST login, gateway IDENTIFY), syncs and subscribes, then every bot receives one message. The figure is the
process's resident set (``VmRSS``) after that minus before the first connect, per account. The fake runs in
this process, so its per-session share (a websocket and a small replay buffer) is included: an upper bound.

Run: ``.venv/bin/python bench/discord_accounts.py [--accounts 100] [--no-compress]``; the last line is JSON.
With zlib-stream the fake's per-connection compressor (about 256 KB) dominates the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
from pathlib import Path

import structlog
from msgr_bridge_discord import DiscordConnector

from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.fakes.discord import DiscordFake
from msgr_bridge.testing.harness import Live


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--no-compress", dest="compress", action="store_false", help="plain gateway frames")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    fake = await DiscordFake().start()
    fake.rest.limits.global_per_s = 100_000
    bob = fake.add_user("bob")
    seeded = []
    for i in range(args.accounts):
        bot, token = fake.add_bot(f"bot{i}")
        guild = fake.add_guild(f"g{i}", [bot["id"], bob["id"]])
        channels = [fake.add_channel(guild["id"], f"c{n}")["id"] for n in range(3)]
        seeded.append((bot, token, channels))
    gc.collect()
    before = rss_mb()
    lives = []
    for bot, token, _ in seeded:
        settings = {
            "api_base": fake.api_url,
            "gateway_url": fake.gateway_url,
            "backfill_messages": 0,
            "compress": args.compress,
        }
        ctx = make_context(
            "discord",
            remote_user_id=bot["id"],
            settings=settings,
            secrets={"token": token},
            sink=CollectingSink(),
        )
        lives.append(await Live(DiscordConnector(ctx)).start())
    for _, _, channels in seeded:
        fake.post(channels[0], bob["id"], "hello")
    for live in lives:
        await live.wait_text("hello")
    gc.collect()
    after = rss_mb()
    for live in lives:
        await live.stop()
    await fake.stop()
    per_account_kb = (after - before) * 1024 / args.accounts
    figures = {
        "accounts": args.accounts,
        "compress": args.compress,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "per_account_kb": round(per_account_kb),
    }
    print(
        f"{args.accounts} Discord accounts, zlib-stream {args.compress}: RSS {before:.1f} -> {after:.1f} MB"
    )
    print(f"  {per_account_kb:.0f} KB per account")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
