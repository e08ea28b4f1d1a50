"""API benchmark: sends/s through POST to the loopback connector, and events/s fanned out over WebSocket.

Runs a real bridge (SQLite in a temporary directory, the loopback network), links an account through the
API, then:

1. ``SENDS`` POSTs of a message with ``CONCURRENCY`` in flight: accepted sends per second (202 answers;
   the delivery worker sends them on meanwhile);
2. ``SUBSCRIBERS`` WebSocket clients; ``EVENTS`` messages posted on the loopback network by another user;
   each is stored, logged and fanned out: events delivered per second (all clients together) and the
   latency from the post to each client's receipt (p50/p99).

The last line printed is one JSON object. Usage: ``python bench/api.py [--sends N] [--events N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.observability.logging import configure_logging
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing import servers
from msgr_bridge.testing.waiting import wait_until


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_load_process(
    path: str, headers: dict[str, str], sends: int, concurrency: int
) -> tuple[float, list[float]]:
    """POST ``sends`` messages with ``concurrency`` in flight from a child process; (seconds, latencies)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_load, (path, headers, sends, concurrency))


def _load(path: str, headers: dict[str, str], sends: int, concurrency: int) -> tuple[float, list[float]]:
    async def go() -> tuple[float, list[float]]:
        counter = iter(range(sends))
        latencies: list[float] = []
        conn = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver(), limit=0)
        async with aiohttp.ClientSession(connector=conn, headers=headers) as http:

            async def sender() -> None:
                for i in counter:
                    t0 = time.perf_counter()
                    async with http.post(path, json={"text": f"s{i}"}) as r:
                        assert r.status == 202, await r.text()
                        await r.read()
                    latencies.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            return time.perf_counter() - t0, latencies

    return asyncio.run(go())


async def fresh_postgres(admin_url: str) -> str:
    """A new, empty database on the PostgreSQL server at ``admin_url`` (left behind for inspection)."""
    name = servers.unique_name("msgr_bench_api")
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def main(
    sends: int, events: int, subscribers: int, concurrency: int, postgres: str | None = None
) -> dict[str, Any]:
    LoopbackNetwork.reset("bench")
    net = LoopbackNetwork.get("bench")
    net.add_user("alice", "Alice", password="pw")
    net.add_user("bob", "Bob", password="pw")
    net.create_group("g", "G", ["alice", "bob"])
    with tempfile.TemporaryDirectory() as tmp:
        url = await fresh_postgres(postgres) if postgres else f"sqlite+aiosqlite:///{Path(tmp) / 'b.db'}"
        async with Database(url) as db:
            await db.migrate()
        configure_logging("warning", "json")
        settings = load_settings(
            overrides={
                "bridge": {"data_dir": tmp},
                "database": {"url": url},
                "api": {"port": 0},
                "logging": {"level": "warning"},
                "sync": {"interval_s": 3600},
            }
        )
        async with Bridge(settings).running() as bridge:
            assert bridge.api is not None
            token = (
                await TokenStore(bridge.db).create(tenant=bridge.tenant, name="bench", scopes=["admin:*"])
            ).token
            h = {"Authorization": f"Bearer {token}"}
            base = f"http://127.0.0.1:{bridge.api.bound_port}"
            conn = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver(), limit=0)
            async with aiohttp.ClientSession(connector=conn, headers=h) as http:
                async with http.post(
                    base + "/v1/links", json={"network": "loopback", "settings": {"network": "bench"}}
                ) as r:
                    flow = await r.json()
                async with http.post(
                    base + f"/v1/links/{flow['id']}/answers",
                    json={"answers": {"user_id": "alice", "password": "pw"}},
                ) as r:
                    acct = (await r.json())["account"]["id"]
                await wait_until(lambda: bridge.supervisor.state(acct) == ConnectionState.CONNECTED)
                path = base + f"/v1/accounts/{acct}/conversations/g/messages"

                # 1. sends, from a separate load-generator process (a client is never the server's
                #    process; on 2 cores, each gets one)
                send_s, latencies = await asyncio.get_running_loop().run_in_executor(
                    None, run_load_process, path, h, sends, concurrency
                )
                # let delivery and the echoes settle before measuring fan-out
                for _ in range(600):
                    if len(net.log) >= sends:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)

                # 2. fan-out
                posted: dict[str, float] = {}
                received = 0
                lat: list[float] = []
                done = asyncio.Event()
                ready = 0
                all_ready = asyncio.Event()

                async def subscriber() -> None:
                    nonlocal received, ready
                    async with http.ws_connect(
                        base.replace("http", "ws") + "/v1/events", max_msg_size=0
                    ) as ws:
                        mine = 0
                        async for msg in ws:
                            frame = json.loads(msg.data)
                            if frame["type"] == "live":
                                ready += 1
                                if ready == subscribers:
                                    all_ready.set()
                                continue
                            if frame["type"] != "events":
                                continue
                            now = time.perf_counter()
                            for e in frame["events"]:
                                text = (e["event"] or {}).get("text", "")
                                if e["kind"] == "message" and text.startswith("e"):
                                    mine += 1
                                    lat.append(now - posted.get(text, now))
                            received += len(frame["events"])
                            if mine >= events:
                                break
                    if received and all(True for _ in [0]):
                        pass

                tasks = [asyncio.create_task(subscriber()) for _ in range(subscribers)]
                await asyncio.wait_for(all_ready.wait(), 30)
                t1 = time.perf_counter()
                for i in range(events):
                    key = f"e{i}"
                    posted[key] = time.perf_counter()
                    net.post("g", "bob", key)
                    if i % 200 == 199:
                        await asyncio.sleep(0)
                await asyncio.wait_for(asyncio.gather(*tasks), 120)
                fan_s = time.perf_counter() - t1
                done.set()
    return {
        "api_sends": sends,
        "api_send_s": round(send_s, 3),
        "api_sends_per_s": round(sends / send_s, 1),
        "api_send_p50_ms": round(pct(latencies, 0.5) * 1000, 2),
        "api_send_p99_ms": round(pct(latencies, 0.99) * 1000, 2),
        "ws_subscribers": subscribers,
        "ws_events_source": events,
        "ws_events_delivered": len(lat),
        "ws_events_per_s": round(len(lat) / fan_s, 1),
        "ws_p50_ms": round(pct(lat, 0.5) * 1000, 2),
        "ws_p99_ms": round(pct(lat, 0.99) * 1000, 2),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sends", type=int, default=3000)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="run on a fresh database on this PostgreSQL server "
        "(e.g. postgresql://postgres@127.0.0.1/postgres) instead of the embedded SQLite",
    )
    a = ap.parse_args()
    result = asyncio.run(main(a.sends, a.events, a.subscribers, a.concurrency, a.postgres))
    result["database"] = "postgresql" if a.postgres else "sqlite"
    print(json.dumps(result))
