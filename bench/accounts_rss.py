"""Memory per linked account: RSS of this process before and after N connectors are connected, synced and
subscribed (their websockets open), against a network's wire-level fake started in the same process.

Run: ``.venv/bin/python bench/accounts_rss.py [--network signal] [--accounts 100]``. Prints one JSON object:
``{"network", "accounts", "rss_before_mib", "rss_after_mib", "per_account_kib"}``. The fake's own model
(people, linked numbers) is built before the first reading, so the difference is the connectors' share.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
from typing import Any

import structlog

from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.waiting import wait_until


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


async def signal(accounts: int) -> dict[str, Any]:
    from msgr_bridge_signal import SignalConnector

    from msgr_bridge.testing.fakes.signal import SignalFake

    async with SignalFake() as fake:
        numbers = [f"+1555040{i:04d}" for i in range(accounts)]
        for number in numbers:
            fake.link(number)
        gc.collect()
        before = rss_kib()
        connectors = []
        for i, number in enumerate(numbers):
            settings = {"base_url": fake.base_url, "number": number}
            ctx = make_context("signal", account_id=f"acct-{i}", remote_user_id=number, settings=settings,
                               sink=CollectingSink())  # fmt: skip
            connectors.append(SignalConnector(ctx))
        tasks = []
        for connector in connectors:
            await connector.connect()
            await connector.sync_state(None)
            tasks.append(asyncio.create_task(connector.subscribe()))
        await wait_until(lambda: all(fake.listening(n) for n in numbers), timeout=60)
        gc.collect()
        after = rss_kib()
        for connector in connectors:
            await connector.disconnect()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"before": before, "after": after}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="signal", choices=["signal"])
    parser.add_argument("--accounts", type=int, default=100)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    found = await signal(args.accounts)
    print(json.dumps({
        "network": args.network,
        "accounts": args.accounts,
        "rss_before_mib": round(found["before"] / 1024, 1),
        "rss_after_mib": round(found["after"] / 1024, 1),
        "per_account_kib": round((found["after"] - found["before"]) / args.accounts, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
