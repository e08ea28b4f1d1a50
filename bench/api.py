"""API benchmark: sends/s through POST to the loopback connector, and events/s fanned out over WebSocket.

Runs a real bridge (SQLite in a temporary directory, the loopback network), links an account through the
API, then:

0. The platform backs off (one 429 with a Retry-After longer than the burst), then POSTs of a message on one
   keep-alive connection, one at a time, for ``ONE_CONNECTION_SECONDS`` (wrk only; ``one_connection_*``:
   what a single client sees, accept only), then with
   ``CONCURRENCY`` in flight, for ``SEND_SECONDS`` from wrk (or, without wrk, ``SENDS`` of them from an
   aiohttp client in another process): sends accepted per second while every one of them waits in the
   outbox (``backoff_*``: what the API alone takes), then how fast the backlog drains once the back-off
   ends (``backlog_drain_per_s``: what delivery alone does);
1. the same POSTs with the platform open (``api_*``): accepted sends per second (202 answers: durably in
   the outbox) while the delivery worker sends them on in the same process, sharing its core; how many
   reached the network during the burst and how long the outbox took to drain after it, with the
   server's CPU time per send;
2. ``SUBSCRIBERS`` WebSocket clients (in their own process); ``EVENTS`` messages posted on the loopback
   network by another user; each is stored, logged and fanned out: events delivered per second (all
   clients together) and the latency from the post to each client's receipt (p50/p99).

The bridge runs on uvloop, as ``msgr-bridge run`` does. The last line printed is one JSON object.
Usage: ``python bench/api.py [--sends N] [--events N] [--postgres ADMIN_URL] [--loader wrk|python]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.app import Bridge
from msgr_bridge.cli import new_event_loop
from msgr_bridge.config import load_settings
from msgr_bridge.errors import RateLimited
from msgr_bridge.observability.logging import configure_logging
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing import servers
from msgr_bridge.testing.config import with_loopback
from msgr_bridge.testing.waiting import wait_until


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


WRK_SCRIPT = """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, nil, '{"text": "s' .. counter .. '"}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "status_errors": %d, "socket_errors": %d, "duration_us": %d, "p50_us": %d, '
    .. '"p99_us": %d}\\n', summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


ONE_CONNECTION_SECONDS = 3.0
"""How long one keep-alive connection POSTs, one request at a time, before the concurrent load."""


def run_wrk(
    path: str, headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[int, float, float, float]:
    """POST messages for ``seconds`` with wrk (a C load generator, so the client's own cost does not eat
    the core the server needs): (sends, seconds, p50 s, p99 s). Every answer must be a 202."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{seconds:g}s",
                "--timeout",
                "60s",
                "-s",
                f.name,
                "--latency",
                path,
            ]
            + [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")]
            + ["-H", "Content-Type: application/json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    r = json.loads(line[4:])
    assert r["status_errors"] == 0 and r["socket_errors"] == 0, out  # every answer a 202 (2xx)
    return r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1e6, r["p99_us"] / 1e6


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


def _subscribe(url: str, headers: dict[str, str], subscribers: int, events: int, queue: Any) -> None:
    """In a child process: ``subscribers`` WebSocket clients; says "ready" once every one is live, then
    returns (event number, arrival time) for each of the ``events`` posted messages each client got.
    ``time.perf_counter`` is the system-wide monotonic clock, so it compares across processes."""

    async def go() -> list[tuple[int, float]]:
        arrivals: list[tuple[int, float]] = []
        live = 0
        all_live = asyncio.Event()
        conn = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver(), limit=0)
        async with aiohttp.ClientSession(connector=conn, headers=headers) as http:

            async def subscriber() -> None:
                nonlocal live
                async with http.ws_connect(url, max_msg_size=0) as ws:
                    mine = 0
                    async for msg in ws:
                        frame = orjson.loads(msg.data)
                        if frame["type"] == "live":
                            live += 1
                            if live == subscribers:
                                queue.put("ready")
                                all_live.set()
                            continue
                        if frame["type"] != "events":
                            continue
                        now = time.perf_counter()
                        for e in frame["events"]:
                            text = (e["event"] or {}).get("text", "")
                            if e["kind"] == "message" and text.startswith("e"):
                                mine += 1
                                arrivals.append((int(text[1:]), now))
                        if mine >= events:
                            break

            await asyncio.wait_for(asyncio.gather(*(subscriber() for _ in range(subscribers))), 180)
        return arrivals

    queue.put(asyncio.run(go()))


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
    sends: int,
    events: int,
    subscribers: int,
    concurrency: int,
    postgres: str | None = None,
    loader: str = "wrk",
    send_seconds: float = 10.0,
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
            overrides=with_loopback(
                {
                    "bridge": {"data_dir": tmp},
                    "database": {"url": url},
                    "api": {"port": 0},
                    "logging": {"level": "warning"},
                    "sync": {"interval_s": 3600},
                }
            )
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

                # Sends come from a separate load-generator process (a client is never the server's
                # process). wrk when installed: a Python client spends about as much CPU per request as the
                # server, so on 2 cores it would measure itself.
                loop = asyncio.get_running_loop()

                async def load() -> tuple[int, float, float, float]:
                    if loader == "wrk":
                        return await loop.run_in_executor(None, run_wrk, path, h, send_seconds, concurrency)
                    secs, latencies = await loop.run_in_executor(
                        None, run_load_process, path, h, sends, concurrency
                    )
                    return sends, secs, pct(latencies, 0.5), pct(latencies, 0.99)

                # 0. the platform backs off (one 429 with Retry-After): the conversation is held, every
                #    send is accepted into the outbox and waits. Then the backlog drains.
                delivered_before = len(net.log)
                one_s = ONE_CONNECTION_SECONDS if loader == "wrk" else 0.0
                net.inject_fault("send", RateLimited(retry_after=send_seconds + one_s + 2.0))
                one: tuple[int, float, float, float] | None = None
                if one_s:  # one keep-alive connection, one request at a time: what a single client sees
                    cpu0 = time.process_time()
                    one = await loop.run_in_executor(None, run_wrk, path, h, one_s, 1)
                    one_cpu_s = time.process_time() - cpu0
                cpu0 = time.process_time()
                held_sends, held_s, _, held_p99 = await load()
                held_cpu_s = time.process_time() - cpu0
                assert len(net.log) == delivered_before, "nothing may be delivered during the back-off"
                held_total = held_sends + (one[0] if one else 0)
                await wait_until(lambda: len(net.log) > delivered_before, timeout=60, interval=0.002)
                t_first = time.perf_counter()
                await wait_until(
                    lambda: len(net.log) - delivered_before >= held_total, timeout=600, interval=0.005
                )
                backlog_drain_s = time.perf_counter() - t_first
                await asyncio.sleep(1.0)

                # 1. sustained: the delivery worker sends on meanwhile, in the same process.
                delivered_before = len(net.log)
                cpu0 = time.process_time()
                sends, send_s, p50, p99 = await load()
                server_cpu_s = time.process_time() - cpu0
                delivered_during = len(net.log) - delivered_before
                # the outbox drains after the burst: how long until every accepted send reached the network
                t_drain = time.perf_counter()
                for _ in range(1200):
                    if len(net.log) - delivered_before >= sends:
                        break
                    await asyncio.sleep(0.1)
                drain_s = time.perf_counter() - t_drain
                await asyncio.sleep(2.0)

                # 2. fan-out, to subscribers in another process (their JSON parsing would otherwise share
                #    the server's core and be measured as the server's cost)
                ctx = multiprocessing.get_context("spawn")
                queue = ctx.Queue()
                ws_url = base.replace("http", "ws") + "/v1/events"
                child = ctx.Process(target=_subscribe, args=(ws_url, h, subscribers, events, queue))
                child.start()
                try:
                    assert await loop.run_in_executor(None, queue.get, True, 60) == "ready"
                    posted: list[float] = []
                    t1 = time.perf_counter()
                    for i in range(events):
                        posted.append(time.perf_counter())
                        net.post("g", "bob", f"e{i}")
                        if i % 200 == 199:
                            await asyncio.sleep(0)
                    arrivals: list[tuple[int, float]] = await loop.run_in_executor(None, queue.get, True, 180)
                    fan_s = max(t for _, t in arrivals) - t1
                finally:
                    await loop.run_in_executor(None, child.join, 10)
                lat = [t - posted[i] for i, t in arrivals]
    one_connection = (
        {
            "one_connection_sends_per_s": round(one[0] / one[1], 1),
            "one_connection_p50_ms": round(one[2] * 1000, 3),
            "one_connection_p99_ms": round(one[3] * 1000, 3),
            "one_connection_server_cpu_us_per_send": round(one_cpu_s / one[0] * 1e6, 1),
        }
        if one
        else {}
    )
    return {
        **one_connection,
        "backoff_api_sends": held_sends,
        "backoff_api_sends_per_s": round(held_sends / held_s, 1),
        "backoff_api_send_p99_ms": round(held_p99 * 1000, 2),
        "backoff_server_cpu_us_per_send": round(held_cpu_s / held_sends * 1e6, 1),
        "backlog_drain_per_s": round(held_total / backlog_drain_s, 1),
        "api_sends": sends,
        "api_send_s": round(send_s, 3),
        "api_sends_per_s": round(sends / send_s, 1),
        "api_send_p50_ms": round(p50 * 1000, 2),
        "api_send_p99_ms": round(p99 * 1000, 2),
        "api_server_cpu_us_per_send": round(server_cpu_s / sends * 1e6, 1),
        "delivered_during_sends": delivered_during,
        "outbox_drain_s_after_sends": round(drain_s, 2),
        "load_generator": loader,
        "ws_subscribers": subscribers,
        "ws_events_source": events,
        "ws_events_delivered": len(lat),
        "ws_events_per_s": round(len(lat) / fan_s, 1),
        "ws_p50_ms": round(pct(lat, 0.5) * 1000, 2),
        "ws_p99_ms": round(pct(lat, 0.99) * 1000, 2),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sends", type=int, default=3000, help="sends to POST (the python loader)")
    ap.add_argument("--send-seconds", type=float, default=10.0, help="how long wrk POSTs")
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="run on a fresh database on this PostgreSQL server "
        "(e.g. postgresql://postgres@127.0.0.1/postgres) instead of the embedded SQLite",
    )
    ap.add_argument(
        "--loader",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="the load generator: wrk (Debian package wrk; the default when installed) or an aiohttp client",
    )
    a = ap.parse_args()
    result = asyncio.run(
        main(a.sends, a.events, a.subscribers, a.concurrency, a.postgres, a.loader, a.send_seconds),
        loop_factory=new_event_loop,
    )
    result["database"] = "postgresql" if a.postgres else "sqlite"
    print(json.dumps(result))
