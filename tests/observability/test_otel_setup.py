"""Loading the OpenTelemetry SDK and exporters from ``[tracing]``: OTLP over HTTP to a local collector
stand-in, the console exporter, nothing loaded for "none", and the core importing the API only."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from msgr_bridge.config import load_settings
from msgr_bridge.observability import tracing
from msgr_bridge.observability.otel_setup import configure_tracing


async def test_otlp_http_exports_the_spans_to_the_collector() -> None:
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = load_settings(
        overrides={
            "tracing": {
                "exporter": "otlp-http",
                "endpoint": f"http://127.0.0.1:{port}/v1/traces",
                "service_name": "bridge-under-test",
            }
        }
    )
    handle = configure_tracing(settings)
    assert handle is not None and tracing.enabled()
    try:
        with tracing.span("inbound.receive", root=True), tracing.span("inbound.normalize"):
            pass
        assert await anyio.to_thread.run_sync(handle.force_flush)
    finally:
        handle.shutdown()
        await runner.cleanup()
    assert not tracing.enabled()
    spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["inbound.normalize", "inbound.receive"]
    resource = received[0].resource_spans[0].resource
    attrs = {a.key: a.value.string_value for a in resource.attributes}
    assert attrs["service.name"] == "bridge-under-test"


def test_the_console_exporter_prints_spans(capfd: pytest.CaptureFixture[str]) -> None:
    handle = configure_tracing(load_settings(overrides={"tracing": {"exporter": "console"}}))
    assert handle is not None
    with tracing.span("outbound.api", root=True):
        pass
    handle.shutdown()  # flushes
    assert '"name": "outbound.api"' in capfd.readouterr().out


def test_none_loads_nothing_and_records_nothing() -> None:
    assert configure_tracing(load_settings()) is None
    assert not tracing.enabled()


def test_the_core_imports_the_opentelemetry_api_only() -> None:
    code = (
        "import sys, msgr_bridge.app, msgr_bridge.cli\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))]\n"
        "assert not loaded, loaded\n"
        "assert 'opentelemetry.trace' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_sampled_out_trace_records_nothing() -> None:
    handle = configure_tracing(
        load_settings(overrides={"tracing": {"exporter": "console", "sample_ratio": 0.0}})
    )
    assert handle is not None
    try:
        with tracing.span("dropped", root=True) as s:
            assert s is not None and not s.is_recording()
            assert tracing.carrier() is not None  # the context still travels, flagged not sampled
    finally:
        handle.shutdown()
