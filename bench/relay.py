"""Relay benchmark: latency and throughput of each connector against its real server, through the bridge.

Inbound: the other person (an independent client) sends; the connector pushes to an ``AccountSink`` on a
``MemoryBus``; the real ``InboundPipeline`` normalizes, dedupes and persists into a migrated SQLite
database (``DatabaseInboundStore``) and ``BusNotifier`` publishes ``*.stored``. Latency is measured from
the other person's send to that stored-event notification. Outbound: ``connector.send_message`` until the
other person's client receives the text.

Each direction runs twice: one message at a time (latency p50/p99) and a burst (throughput, messages
per second from the first send to the last arrival; inbound also each message's latency under the burst's
load, ``inbound_burst_*_ms``: for IRC, which cannot replay, that is how long a line read from the socket
waits before it is committed, so what a crash can lose). Counts are bounded so the whole run takes a few
minutes; IRC is paced by flood control (about two lines a second), so it gets fewer messages. WhatsApp runs
against ``FakeWhatsmeow`` in place of whatsmeow's Go library, with send pacing off (``relay_peers``).

Run: ``.venv/bin/python bench/relay.py [--count 200] [--irc-count 20] [--only xmpp,slack]``. The output is a
table, then as the last line one JSON object: ``{"xmpp": {"inbound_p50_ms": ..., ...}, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "plugins/msgr-bridge-xmpp/tests"),
                str(ROOT / "plugins/msgr-bridge-matrix/tests")]  # fmt: skip

import structlog  # noqa: E402
from relay_peers import PEERS, Arrivals, Side  # noqa: E402

from msgr_bridge.bus import MemoryBus  # noqa: E402
from msgr_bridge.connectors.clock import SystemClock  # noqa: E402
from msgr_bridge.connectors.protocol import Connector, ConnectorContext  # noqa: E402
from msgr_bridge.inbound.notify import BusNotifier, StoredEvent  # noqa: E402
from msgr_bridge.inbound.persist import DatabaseInboundStore  # noqa: E402
from msgr_bridge.inbound.pipeline import InboundPipeline  # noqa: E402
from msgr_bridge.inbound.sink import AccountSink  # noqa: E402
from msgr_bridge.schema import Account, Message, OutboundMessage  # noqa: E402
from msgr_bridge.store.db import Database  # noqa: E402
from msgr_bridge.store.repos.accounts import AccountRepo  # noqa: E402
from msgr_bridge.testing.fakes import MemorySecrets, MemoryStateStore  # noqa: E402

TENANT = "default"
WAIT_S = 60.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Bridge:
    """The inbound half of the bridge on a temp SQLite database, and stored-message arrival times."""

    def __init__(self, directory: Path) -> None:
        self.db = Database(f"sqlite:///{directory}/bench.db")
        self.bus = MemoryBus()
        self.stored = Arrivals()

    async def run(self, network: str, convert: Any) -> None:
        await self.db.connect()
        await self.db.migrate()
        pipeline = InboundPipeline(
            bus=self.bus,
            tenant=TENANT,
            converters={network: convert},
            store=DatabaseInboundStore(self.db),
            notifier=BusNotifier(self.bus),
        )
        ready = asyncio.Event()

        async def listen() -> None:
            async with self.bus.subscribe(f"{TENANT}.*.stored", name="bench") as sub:
                ready.set()
                async for _topic, stored, _key in sub:
                    assert isinstance(stored, StoredEvent)
                    if isinstance(stored.event, Message) and stored.outcome == "created":
                        self.stored.arrived(stored.event.text)

        self.tasks = [asyncio.create_task(pipeline.run()), asyncio.create_task(listen())]
        await ready.wait()
        await asyncio.sleep(0.05)  # let the pipeline subscribe

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.db.close()


async def timed(
    count: int, label: str, send: Callable[[str], Awaitable[Any]], arrivals: Arrivals, *, burst: bool
) -> tuple[list[float], float]:
    """Send ``count`` texts; latencies (ms) one at a time (or, for a burst, of each text under the load of the
    others), and the burst's throughput (msgs/s)."""
    texts = [f"{label} {i} {time.monotonic_ns()}" for i in range(count)]
    started: dict[str, float] = {}
    latencies: list[float] = []
    first = time.perf_counter()
    for text in texts:
        started[text] = time.perf_counter()
        await send(text)
        if not burst:
            await arrivals.wait(text, WAIT_S)
            latencies.append((arrivals.at[text] - started[text]) * 1000)
    for text in texts:
        await arrivals.wait(text, WAIT_S)
    if burst:
        latencies = [(arrivals.at[t] - started[t]) * 1000 for t in texts]
    last = max(arrivals.at[t] for t in texts)
    return latencies, count / (last - first)


async def bench_one(side: Side, count: int, directory: Path, inbound_burst: int) -> dict[str, float]:
    bridge = Bridge(directory)
    await side.start()
    cls: type[Connector] = side.connector_class
    await bridge.run(cls.network, cls.convert)
    account = Account(id=f"bench-{cls.network}", network=cls.network, remote_user_id=side.remote_user_id)
    await AccountRepo(bridge.db).create(account, settings=side.settings)
    ctx = ConnectorContext(
        account=account,
        sink=AccountSink(bridge.bus, account),
        secrets=MemorySecrets(side.secrets),
        state=MemoryStateStore(),
        clock=SystemClock(),
        settings=side.settings,
        log=structlog.get_logger("bench"),
        **({"hooks": side.hooks} if getattr(side, "hooks", None) is not None else {}),
    )
    connector = cls(ctx)
    await connector.connect()
    await connector.sync_state(None)
    task = asyncio.create_task(connector.subscribe())
    await asyncio.sleep(0.2)
    try:
        warm = "warm-up"
        await side.peer_send(warm)
        await bridge.stored.wait(warm, WAIT_S)
        in_lat, _ = await timed(count, "in", side.peer_send, bridge.stored, burst=False)
        burst_lat, in_rate = await timed(inbound_burst, "in-burst", side.peer_send, bridge.stored, burst=True)

        async def send(text: str) -> None:
            await connector.send_message(side.conversation_id, OutboundMessage(txn_id=text, text=text))

        out_lat, _ = await timed(count, "out", send, side.peer_arrivals, burst=False)
        _, out_rate = await timed(count, "out-burst", send, side.peer_arrivals, burst=True)
    finally:
        await connector.disconnect()
        await asyncio.gather(task, return_exceptions=True)
        await side.stop()
        await bridge.close()
    return {
        "count": count,
        "inbound_p50_ms": round(statistics.median(in_lat), 2),
        "inbound_p99_ms": round(percentile(in_lat, 99), 2),
        "inbound_msgs_per_s": round(in_rate, 1),
        "inbound_burst_p50_ms": round(statistics.median(burst_lat), 2),
        "inbound_burst_p99_ms": round(percentile(burst_lat, 99), 2),
        "inbound_burst_max_ms": round(max(burst_lat), 2),
        "outbound_p50_ms": round(statistics.median(out_lat), 2),
        "outbound_p99_ms": round(percentile(out_lat, 99), 2),
        "outbound_msgs_per_s": round(out_rate, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="messages per phase (not IRC)")
    parser.add_argument("--irc-count", type=int, default=20, help="messages per phase for IRC")
    parser.add_argument(
        "--only", default="loopback,xmpp,irc,matrix,slack,discord,telegram,signal,teams,whatsapp"
    )
    parser.add_argument(
        "--inbound-burst",
        type=int,
        default=0,
        help="texts in the inbound burst (default: --count); each one's send-to-stored time is reported too "
        "(inbound_burst_p50/p99/max_ms: what a crash can lose on a network that cannot replay, like IRC)",
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    results: dict[str, dict[str, float]] = {}
    for name in args.only.split(","):
        count = args.irc_count if name == "irc" else args.count
        with tempfile.TemporaryDirectory(prefix=f"msgr-bench-{name}-") as tmp:
            started = time.perf_counter()
            burst = args.inbound_burst or count
            results[name] = await bench_one(PEERS[name](), count, Path(tmp), burst)
            print(f"# {name}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
    cols = ["count", "inbound_p50_ms", "inbound_p99_ms", "inbound_msgs_per_s",
            "outbound_p50_ms", "outbound_p99_ms", "outbound_msgs_per_s"]  # fmt: skip
    print(f"{'connector':<10}" + "".join(f"{c:>21}" for c in cols))
    for name, figures in results.items():
        print(f"{name:<10}" + "".join(f"{figures[c]:>21}" for c in cols))
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
