"""Pipeline benchmark (not a test): inbound and outbound throughput into PostgreSQL, latency and memory.

    .venv/bin/python bench/pipeline.py [--messages 100000] [--paced-seconds 10] [--outbound 20000] [--tracing]

* **Inbound**: remote users post ``--messages`` messages on an in-process loopback network; the real loopback
  connector pushes them through ``AccountSink`` -> ``MemoryBus`` -> ``InboundPipeline`` (normalize, dedupe
  cache on, group commit) -> ``DatabaseInboundStore`` (PostgreSQL) -> ``BusNotifier``; the clock stops when
  the last stored-message notification arrives. Two linked accounts share one group, so half the work is
  the dedupe path (stored once, linked twice).
* **Latency**: posts paced at 2,000 msg/s; receipt by the connector to notification, p50/p95/p99.
* **Outbound**: ``OutboundService.submit`` (outbox, policy, impersonation) then ``DeliveryWorker``
  (rate limiter with limits lifted) to the loopback connector, delivery statuses stored.
* **Peak RSS** from ``resource.getrusage``.
* Metrics are counted as in the bridge (``observability.metrics.Metrics``). ``--tracing`` records every span
  as ``[tracing] exporter`` would (the OpenTelemetry SDK, a ``BatchSpanProcessor``), into an exporter that
  drops them: the cost of tracing without the collector's network I/O. Without it, tracing is off (the
  default of a bridge).

PostgreSQL: ``MSGR_TEST_PG_URL``, else 127.0.0.1:5432 when it answers, else a throwaway server
(``msgr_bridge.testing.servers``); ``--sqlite``: a SQLite file, the embedded default. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

import anyio
import asyncpg
import structlog
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

from msgr_bridge.bus import MemoryBus
from msgr_bridge.connectors.clock import SystemClock
from msgr_bridge.connectors.protocol import ConnectorContext
from msgr_bridge.inbound.notify import BusNotifier
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.inbound.pipeline import InboundPipeline
from msgr_bridge.inbound.sink import AccountSink
from msgr_bridge.observability.metrics import Metrics
from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.testing import servers
from msgr_bridge.testing.fakes import MemorySecrets, MemoryStateStore

NET = "bench"
METRICS = Metrics()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quiet_logs() -> None:
    import logging

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


async def fresh_database(admin_url: str) -> tuple[str, str]:
    name = servers.unique_name("msgr_bench")
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Rig:
    """Network, accounts, connectors and the inbound pipeline over one database."""

    def __init__(self, db: Database, *, record_latency: bool, conv: str) -> None:
        self.db = db
        self.conv = conv
        LoopbackNetwork.reset(NET)
        self.net = LoopbackNetwork.get(NET)
        for user in ("a1", "a2", "r1", "r2"):
            self.net.add_user(user, user.upper(), password="pw")
        self.net.create_group(conv, "Bench", ["a1", "a2", "r1", "r2"])
        self.bus = MemoryBus()
        self.pipeline = InboundPipeline(
            bus=self.bus,
            tenant="default",
            converters={"loopback": LoopbackConnector.convert},
            store=DatabaseInboundStore(db),
            notifier=BusNotifier(self.bus),
            max_batch=1024,
            record_latency=record_latency,
            metrics=METRICS,
        )
        self.notified = 0
        self.done = anyio.Event()
        self.expect = 0

    def connector(self, account: Account) -> LoopbackConnector:
        ctx = ConnectorContext(
            account=account,
            sink=AccountSink(self.bus, account),
            secrets=MemorySecrets({"password": "pw"}),
            state=MemoryStateStore(),
            clock=SystemClock(),
            settings={"network": NET},
            log=structlog.get_logger("bench"),
        )
        return LoopbackConnector(ctx)

    async def count_notifications(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with self.bus.subscribe("default.*.stored", name="bench", maxsize=1 << 20) as sub:
            task_status.started()
            while True:
                batch = await sub.receive_batch(4096)
                self.notified += len(batch)
                if self.expect and self.notified >= self.expect:
                    self.done.set()


async def accounts(db: Database, ids: list[str]) -> list[Account]:
    repo = AccountRepo(db)
    out = []
    for user in ids:
        account = Account(id=f"acc-{user}", network="loopback", remote_user_id=user)
        if await repo.get(account.id) is None:
            await repo.create(account)
        out.append(account)
    return out


async def bench_inbound(db: Database, n: int) -> dict[str, float]:
    rig = Rig(db, record_latency=False, conv="inbound")
    accs = await accounts(db, ["a1", "a2"])
    conns = [rig.connector(a) for a in accs]
    for c in conns:
        await c.connect()
    for i in range(n):
        rig.net.post(rig.conv, "r1" if i % 2 else "r2", f"benchmark message {i}")
    rig.expect = n  # one notification per stored message; the second account's copy is a link
    async with anyio.create_task_group() as tg:
        await tg.start(rig.pipeline.run)
        await tg.start(rig.count_notifications)
        start, cpu = time.perf_counter(), time.process_time()
        for c in conns:
            tg.start_soon(c.subscribe)
        await rig.done.wait()
        st = rig.pipeline.stats
        for _ in range(10_000_000):  # and the second account's copies (links, not notified)
            if st.created + st.linked + st.duplicates >= 2 * n:
                break
            await anyio.sleep(0.005)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        for c in conns:
            await c.disconnect()
        tg.cancel_scope.cancel()
    st = rig.pipeline.stats
    print(
        f"inbound: {n} messages x 2 linked accounts in {elapsed:.2f}s = {n / elapsed:,.0f} msg/s "
        f"({2 * n / elapsed:,.0f} payloads/s); created={st.created} linked={st.linked} "
        f"duplicates={st.duplicates} batches={st.batches}; bridge CPU {cpu * 1e6 / (2 * n):.0f} us/payload"
    )
    return {
        "inbound_msgs_per_s": n / elapsed,
        "inbound_payloads_per_s": 2 * n / elapsed,
        "inbound_cpu_us_per_payload": cpu * 1e6 / (2 * n),
    }


async def bench_latency(db: Database, seconds: float, rate: int = 2000) -> dict[str, float]:
    rig = Rig(db, record_latency=True, conv="paced")
    (account,) = await accounts(db, ["a1"])
    conn = rig.connector(account)
    await conn.connect()
    total = int(seconds * rate)
    rig.expect = total
    tick = 0.005
    per_tick = int(rate * tick)
    async with anyio.create_task_group() as tg:
        await tg.start(rig.pipeline.run)
        await tg.start(rig.count_notifications)
        tg.start_soon(conn.subscribe)
        start = time.perf_counter()
        for i in range(0, total, per_tick):
            for j in range(i, min(total, i + per_tick)):
                rig.net.post(rig.conv, "r1", f"paced {j}")
            next_at = start + (i + per_tick) / rate
            await anyio.sleep(max(0.0, next_at - time.perf_counter()))
        with anyio.fail_after(60):
            await rig.done.wait()
        await conn.disconnect()
        tg.cancel_scope.cancel()
    lat = sorted(x / 1e6 for x in rig.pipeline.stats.latencies_ns)
    q = statistics.quantiles(lat, n=100)
    print(
        f"latency at {rate} msg/s over {total} messages: p50={q[49]:.2f}ms p95={q[94]:.2f}ms "
        f"p99={q[98]:.2f}ms max={lat[-1]:.2f}ms"
    )
    return {"inbound_p50_ms": q[49], "inbound_p95_ms": q[94], "inbound_p99_ms": q[98]}


async def bench_outbound(db: Database, n: int) -> dict[str, float]:
    try:
        from msgr_bridge.outbound.delivery import DeliveryWorker
        from msgr_bridge.outbound.impersonation import Impersonation, StaticDirectory
        from msgr_bridge.outbound.ratelimit import UNLIMITED, MemoryRateLimiter
        from msgr_bridge.outbound.requests import OutboundRequest
        from msgr_bridge.outbound.service import OutboundService
    except ImportError as exc:
        print(f"outbound: skipped, the outbound package is not usable yet ({exc})")
        return {"outbound_sends_per_s": 0.0}
    rig = Rig(db, record_latency=False, conv="outbound")
    (account,) = await accounts(db, ["a1"])
    conn = rig.connector(account)
    await conn.connect()
    impersonation = Impersonation(db, StaticDirectory({account.id: conn}))
    worker = DeliveryWorker(
        db, rig.bus, impersonation, limiter=MemoryRateLimiter({"loopback": UNLIMITED}), metrics=METRICS
    )
    service = OutboundService(db, rig.bus, impersonation, wake=worker.wake, metrics=METRICS)
    convs = [f"o{i}" for i in range(32)]
    for c in convs:
        rig.net.create_group(c, c, ["a1", "r1"])
    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        sem = anyio.Semaphore(64)

        async def submit(i: int) -> None:
            async with sem:
                await service.submit(
                    OutboundRequest(
                        tenant="default",
                        account_id=account.id,
                        conversation_id=convs[i % len(convs)],
                        text=f"outbound {i}",
                        idempotency_key=f"bench-{i}",
                    )
                )

        async with anyio.create_task_group() as submitters:
            for i in range(n):
                submitters.start_soon(submit, i)
        accepted = time.perf_counter()
        await tg.start(worker.run)
        for _ in range(10_000_000):
            if worker.stats.sent + worker.stats.failed + worker.stats.dead_lettered >= n:
                break
            await anyio.sleep(0.01)
        done, cpu = time.perf_counter(), time.process_time() - cpu
        tg.cancel_scope.cancel()
    await conn.disconnect()
    sent = worker.stats.sent
    print(
        f"outbound: {n} requests accepted in {accepted - start:.2f}s ({n / (accepted - start):,.0f}/s), "
        f"delivered {sent} in {done - accepted:.2f}s ({sent / (done - accepted):,.0f}/s); end to end "
        f"{n / (done - start):,.0f}/s; failed={worker.stats.failed} posted={len(rig.net.log)}; "
        f"bridge CPU {cpu * 1e6 / n:.0f} us/send"
    )
    return {
        "outbound_cpu_us_per_send": cpu * 1e6 / n,
        "outbound_sends_per_s": sent / (done - accepted),
        "outbound_accept_per_s": n / (accepted - start),
        "outbound_end_to_end_per_s": n / (done - start),
    }


def start_tracing() -> Any:
    """Record every span through the SDK's batch processor into an exporter that drops them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from msgr_bridge.observability import tracing

    class Drop(SpanExporter):
        exported = 0

        def export(self, spans: Any) -> SpanExportResult:
            Drop.exported += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    tracing.install(provider.get_tracer("msgr_bridge"))
    return provider, Drop


async def run_all(db: Database, args: argparse.Namespace, result: dict[str, Any]) -> None:
    result.update(await bench_inbound(db, args.messages))
    result.update(await bench_latency(db, args.paced_seconds))
    if args.outbound:
        result.update(await bench_outbound(db, args.outbound))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quiet_logs()
    traced = start_tracing() if args.tracing else None
    result: dict[str, Any] = {}
    if args.sqlite:  # the embedded default: a SQLite file in a temporary directory
        with tempfile.TemporaryDirectory(prefix="msgr-pipeline-") as tmp:
            async with Database(f"sqlite:///{tmp}/bench.db") as db:
                await db.migrate()
                await run_all(db, args, result)
    else:
        with servers.postgres_admin_url() as admin:
            url, name = await fresh_database(admin)
            try:
                async with Database(url, pool_size=4) as db:
                    await db.migrate()
                    await run_all(db, args, result)
            finally:
                await drop_database(admin, name)
    result["backend"] = "sqlite" if args.sqlite else "postgresql"
    result["peak_rss_mb"] = rss_mb()
    result["messages"] = args.messages
    result["tracing"] = bool(args.tracing)
    if traced is not None:
        provider, drop = traced
        provider.force_flush()
        result["spans_exported"] = drop.exported
        print(f"tracing on: {drop.exported} spans recorded and exported")
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--outbound", type=int, default=20_000)
    parser.add_argument(
        "--sqlite", action="store_true", help="a SQLite file (the default) instead of PostgreSQL"
    )
    parser.add_argument("--tracing", action="store_true", help="record every span (SDK, dropping exporter)")
    parser.add_argument("--profile", action="store_true", help="cProfile the run, top 25 by cumulative time")
    ns = parser.parse_args()
    if ns.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        out = prof.runcall(asyncio.run, main(ns))
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        out = asyncio.run(main(ns))
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}))
