"""Slack figures against the fake Slack: memory per linked account, and history import speed.

* ``accounts``: N Slack connectors (each its own token, Socket Mode socket and user directory) connected
  and subscribed in this process; RSS before and after, per account.
* ``history``: one conversation with M messages imported by ``sync_state`` (catch-up of a conversation
  never seen), once with Slack's limits for apps outside the Marketplace on the fake (1 history call a
  minute, 15 messages a call: only the first call is timed, the pace after it is the limit's), once with
  the limits lifted (no tiers, 999 messages a call). Timed: Slack's answers to payloads ready for the
  inbound pipeline (storing them is the pipeline's rate: bench/pipeline.py).

Run: ``.venv/bin/python bench/slack.py [--accounts 100] [--messages 1998]``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins/msgr-bridge-slack/tests")]

import structlog  # noqa: E402
from msgr_bridge_slack import SlackConnector  # noqa: E402

from msgr_bridge.testing.fakes import make_context  # noqa: E402
from msgr_bridge.testing.fakes.slack import FakeSlack  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def connector(fake: FakeSlack, user_id: str, **settings: Any) -> SlackConnector:
    ws = fake.workspace
    secrets = {"token": ws.issue_token(user_id).value, "app_token": ws.issue_token(user_id, "app").value}
    ctx = make_context(
        "slack",
        remote_user_id=user_id,
        secrets=secrets,
        settings={"api_url": fake.base_url, "user_id": user_id, **settings},
    )
    return SlackConnector(ctx)


async def accounts(n: int) -> dict[str, float]:
    async with FakeSlack() as fake:
        users = [fake.workspace.add_user(f"user{i}") for i in range(n)]
        fake.workspace.create_channel("general", [u.id for u in users])
        gc.collect()
        before = rss_mib()
        connectors = [connector(fake, u.id) for u in users]
        for c in connectors:
            await c.connect()
        tasks = [asyncio.create_task(c.subscribe()) for c in connectors]
        await asyncio.sleep(1)
        gc.collect()
        after = rss_mib()
        for c in connectors:
            await c.disconnect()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "accounts": n,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "per_account_kib": round((after - before) * 1024 / n, 1),
    }


async def history(m: int, *, limited: bool) -> dict[str, float]:
    async with FakeSlack(rate_limits=limited, non_marketplace=limited) as fake:
        me, bob = fake.workspace.add_user("me"), fake.workspace.add_user("bob")
        chan = fake.workspace.create_channel("general", [me.id, bob.id])
        for i in range(m):
            fake.workspace.post(chan.id, bob.id, f"message {i}")
        settings = {"history_days": 3650, "history_max_wait_s": 0}
        if not limited:
            settings |= {"history_per_minute": 100_000, "history_page_size": 999, "history_max_wait_s": 60}
        c = connector(fake, me.id, **settings)
        await c.connect()
        started = time.perf_counter()
        snapshot = await c.sync_state(None)
        took = time.perf_counter() - started
        pending = await c.ctx.state.get("catchup") or {}
        await c.disconnect()
    fetched = len(snapshot.history) or len(pending.get("messages") or ())
    calls = sum(r.method == "conversations.history" for r in fake.requests)
    out = {
        "messages": m,
        "fetched_first_sync": fetched,
        "history_calls": calls,
        "seconds": round(took, 3),
        "msgs_per_s": round(fetched / took, 1),
    }
    if limited:
        out["sustained_msgs_per_s"] = round(15 / 60, 2)  # 15 messages, then the next call waits a minute
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1998)  # under the 2000-message catch-up cap
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    results = {
        "accounts": await accounts(args.accounts),
        "history_limited": await history(args.messages, limited=True),
        "history_lifted": await history(args.messages, limited=False),
    }
    for name, figures in results.items():
        print(f"{name:<16} " + "  ".join(f"{k}={v}" for k, v in figures.items()))
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
