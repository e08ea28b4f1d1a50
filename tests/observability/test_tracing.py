"""Tracing: the span tree of one inbound and one outbound message through a running bridge and its API, the
context carried in bus events and the outbox row, trace ids on log lines, and nothing recorded when off."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence

import pytest
import structlog
from msgr_bridge_loopback import LoopbackNetwork
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from msgr_bridge.bus import MemoryBus
from msgr_bridge.inbound.notify import StoredEvent
from msgr_bridge.inbound.sink import AccountSink, RawInbound
from msgr_bridge.observability import tracing
from msgr_bridge.observability.logging import configure_logging
from msgr_bridge.schema import Account
from msgr_bridge.store.repos.outbox import OutboxRepo
from msgr_bridge.testing.waiting import wait_until

from .conftest import Start

CONV = "/v1/accounts/{a}/conversations/g"
INBOUND = ["inbound.receive", "inbound.normalize", "inbound.dedupe", "inbound.persist", "inbound.notify"]


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def trace_of(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_inbound_message_is_one_trace_with_every_stage(
    start: Start, net: LoopbackNetwork, spans: InMemorySpanExporter
) -> None:
    async with start() as api:
        await api.link("alice", "pw-alice")
        stored: list[StoredEvent] = []

        async def watch() -> None:
            async with api.bridge.bus.subscribe("default.*.stored", name="t", maxsize=100) as sub:
                while True:
                    stored.extend(e.message for e in await sub.receive_batch(10))

        import anyio

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.sleep(0.05)
            spans.clear()
            payload = net.post("g", "bob", "traced hello")
            await wait_until(lambda: any(getattr(e.event, "text", "") == "traced hello" for e in stored))
            tg.cancel_scope.cancel()

        finished = spans.get_finished_spans()
        roots = [s for s in named(finished, "inbound.receive") if s.attributes["msgr.account"]]
        assert len(roots) == 1, [s.name for s in finished]
        root = roots[0]
        assert root.parent is None
        assert root.context is not None
        tree = trace_of(finished, root.context.trace_id)
        assert sorted(s.name for s in tree) == sorted(INBOUND)
        for s in tree:
            if s is not root:
                assert parent_id(s) == root.context.span_id, s.name  # every stage hangs off the receipt
        persist = named(tree, "inbound.persist")[0]
        assert persist.attributes["msgr.batch_size"] >= 1
        # the batch span is a trace of its own, linking this message's trace (and linked back)
        (batch,) = [
            b
            for b in named(finished, "inbound.batch")
            if any(link.context.span_id == root.context.span_id for link in b.links)
        ]
        assert batch.context is not None
        assert persist.links[0].context.span_id == batch.context.span_id
        # the context rides on the stored event published on the bus
        (event,) = [e for e in stored if getattr(e.event, "text", "") == "traced hello"]
        assert event.trace is not None
        assert event.trace["traceparent"].split("-")[1] == format(root.context.trace_id, "032x")
        assert payload["text"] == "traced hello"


async def test_one_outbound_message_is_one_trace_from_the_api_to_its_delivery_status(
    start: Start, net: LoopbackNetwork, spans: InMemorySpanExporter
) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        spans.clear()
        client_trace = "0af7651916cd43dd8448eb211c80319c"
        headers = {"traceparent": f"00-{client_trace}-b7ad6b7169203331-01"}
        status, body = await api.call(
            "POST", CONV.format(a=a) + "/messages", json={"text": "out"}, headers=headers
        )
        assert status == 202

        async def delivered() -> bool:
            return bool(named(spans.get_finished_spans(), "outbound.status"))

        await wait_until(delivered)
        tree = trace_of(spans.get_finished_spans(), int(client_trace, 16))
        names = sorted(s.name for s in tree)
        assert names == sorted(
            [
                "outbound.api",
                "outbound.impersonation",
                "outbound.policy",
                "outbound.outbox",
                "outbound.delivery",
                "outbound.ratelimit",
                "outbound.send",
                "outbound.status",
            ]
        ), names
        (root,) = named(tree, "outbound.api")
        assert root.context is not None
        assert parent_id(root) == 0xB7AD6B7169203331  # the client's span is the parent
        by_name = {s.name: s for s in tree}
        for child in ("outbound.impersonation", "outbound.policy", "outbound.outbox", "outbound.delivery"):
            assert parent_id(by_name[child]) == root.context.span_id, child
        delivery = by_name["outbound.delivery"]
        assert delivery.context is not None
        assert delivery.attributes["msgr.result"] == "sent"
        for child in ("outbound.ratelimit", "outbound.send"):
            assert parent_id(by_name[child]) == delivery.context.span_id, child
        assert by_name["outbound.status"].attributes["msgr.result"] == "sent"
        # the context was carried by the outbox row, which is where the worker read it from
        entry = await OutboxRepo(api.bridge.db).get(body["outbox_id"])
        assert entry is not None
        assert entry.payload["trace"]["traceparent"].split("-")[1] == client_trace


async def test_without_a_client_trace_the_api_request_starts_one(
    start: Start, net: LoopbackNetwork, spans: InMemorySpanExporter
) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        spans.clear()
        status, _ = await api.call("POST", CONV.format(a=a) + "/messages", json={"text": "x"})
        assert status == 202
        await wait_until(lambda: bool(named(spans.get_finished_spans(), "outbound.status")))
        (root,) = named(spans.get_finished_spans(), "outbound.api")
        assert root.parent is None and root.context is not None
        assert {s.name for s in trace_of(spans.get_finished_spans(), root.context.trace_id)} >= {
            "outbound.delivery",
            "outbound.status",
        }


async def test_nothing_is_carried_or_recorded_while_tracing_is_off() -> None:
    assert not tracing.enabled()
    bus = MemoryBus()
    account = Account(id="acc", network="loopback", remote_user_id="me")
    async with bus.subscribe("default.*.inbound", name="t", maxsize=10) as sub:
        await AccountSink(bus, account).push({"x": 1})
        (env,) = await sub.receive_batch(10)
    item: RawInbound = env.message
    assert item.trace is None
    assert tracing.carrier() is None
    with tracing.span("anything") as s:
        assert s is None


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    yield out
    structlog.configure(**saved)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def test_a_log_line_inside_a_span_carries_its_trace_and_span_ids(
    spans: InMemorySpanExporter, json_logs: io.StringIO
) -> None:
    log = structlog.get_logger("test")
    with tracing.span("outer", root=True) as s:
        log.info("inside")
    log.info("outside")
    inside, outside = (json.loads(line) for line in json_logs.getvalue().splitlines())
    assert s is not None
    assert inside["trace_id"] == format(s.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(s.get_span_context().span_id, "016x")
    assert "trace_id" not in outside and "span_id" not in outside
