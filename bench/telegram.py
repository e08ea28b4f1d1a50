"""Telegram accounts on the fake Telegram: RSS of N linked accounts, and the history import rate.

Memory: RSS of N connectors connected and subscribed to the fake Telegram.

Every account is linked through the connector's own link flow (auth-key exchange and login) on the fake
(``msgr_bridge.testing.fakes.telegram``), which runs in this process; RSS is read from /proc before the
connectors connect and after all of them are subscribed and have received one message each, so the
figure per account is the connector, its Telethon client and its connection (plus the fake's few objects
for that connection).

History import: one account linked to ``--chats`` conversations of ``--messages`` messages each; the
first sync imports them all (``history_import``); msg/s is payloads converted per second of that sync.

Run: ``.venv/bin/python bench/telegram.py [--accounts 100] [--chats 20 --messages 500]``; the last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import structlog
from msgr_bridge_telegram import TelegramConnector
from msgr_bridge_telegram.config import TEST_SERVER_ENV

from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.fakes.telegram import FakeTelegram


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def history_rate(chats: int, messages: int) -> dict[str, float]:
    fake = await FakeTelegram().start()
    os.environ[TEST_SERVER_ENV] = fake.address
    me = fake.world.add_user("Me", "15558888")
    for index in range(chats):
        other = fake.world.add_user(f"Other {index}", f"1556{index:06d}")
        for n in range(messages):
            fake.world.send(other, me, f"message {n} from {index}")
    settings = {"api_id": 1, "api_hash": "bench", "history_import": messages}
    flow = TelegramConnector.link_flow(settings)
    await flow.start()
    result: Any = await flow.submit({"phone": f"+{me.phone}", "code": me.login_code})
    merged = {**settings, **result.settings}
    ctx = make_context(
        "telegram", remote_user_id=result.remote_user_id, settings=merged, secrets=result.secrets
    )
    connector = TelegramConnector(ctx)
    await connector.connect()
    started = time.perf_counter()
    snapshot = await connector.sync_state(None)
    events = [e for p in snapshot.history for e in TelegramConnector.convert(p, ctx.account)]
    elapsed = time.perf_counter() - started
    await connector.disconnect()
    await fake.stop()
    assert len(events) == chats * messages, len(events)
    return {"history_messages": len(events), "history_import_msgs_per_s": round(len(events) / elapsed, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    fake = await FakeTelegram().start()
    os.environ[TEST_SERVER_ENV] = fake.address
    friend = fake.world.add_user("Friend", "15559999")
    settings = {"api_id": 1, "api_hash": "bench", "history_import": 0}
    linked: list[tuple[Any, Any]] = []
    for index in range(args.accounts):
        user = fake.world.add_user(f"User {index}", f"1555{index:06d}")
        flow = TelegramConnector.link_flow(settings)
        await flow.start()
        result: Any = await flow.submit({"phone": f"+{user.phone}", "code": user.login_code})
        linked.append((user, result))
    gc.collect()
    before = rss_mib()
    connectors, tasks = [], []
    for user, result in linked:
        merged = {**settings, **result.settings}
        ctx = make_context(
            "telegram",
            remote_user_id=result.remote_user_id,
            settings=merged,
            secrets=result.secrets,
            sink=CollectingSink(),
        )
        connector = TelegramConnector(ctx)
        await connector.connect()
        await connector.sync_state(None)
        tasks.append(asyncio.create_task(connector.subscribe()))
        connectors.append((user, connector))
    for user, _ in connectors:
        fake.world.send(friend, user, "hello")
    for _, connector in connectors:
        sink = connector.ctx.sink
        assert isinstance(sink, CollectingSink)
        await sink.wait_for(lambda p: True, 30)
    gc.collect()
    after = rss_mib()
    for _, connector in connectors:
        await connector.disconnect()
    await asyncio.gather(*tasks, return_exceptions=True)
    await fake.stop()
    imported = await history_rate(args.chats, args.messages)  # after the RSS figure: it allocates a lot
    figures = {
        "accounts": args.accounts,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "per_account_kib": round((after - before) * 1024 / args.accounts, 1),
        **imported,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
