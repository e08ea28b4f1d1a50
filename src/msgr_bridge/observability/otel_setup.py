"""Loading the OpenTelemetry SDK and an exporter, only when ``[tracing] exporter`` names one.

Nothing here is imported at module level: ``opentelemetry-sdk`` and the OTLP exporters are the ``[otel]``
extra, and a bridge with ``exporter = "none"`` never loads them. A missing package is a ``ConfigError``
saying what to install.

The bridge keeps its own ``TracerProvider`` (the process-wide global one is left to an embedding
application) with a ``BatchSpanProcessor``: spans are exported from a background thread in batches, and a
full queue drops spans rather than slowing the pipelines.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from ..errors import ConfigError
from . import tracing

__all__ = ["TracingHandle", "configure_tracing", "use_exporter"]


class TracingHandle(Protocol):
    def force_flush(self, timeout_millis: int = ...) -> bool: ...

    def shutdown(self) -> None: ...


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError:  # pragma: no cover - the extra is missing
        raise ConfigError(
            "tracing.exporter is set but the OpenTelemetry SDK is not installed",
            hint="pip install 'msgr-bridge[otel]' (or set [tracing] exporter = \"none\")",
        ) from None
    return sdk_trace


def _exporter(kind: str, endpoint: str) -> Any:
    try:
        if kind == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter(out=sys.stdout)  # the stdout of now, not of the SDK's import
        if kind == "otlp-grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(
                endpoint=endpoint or None, insecure=endpoint.startswith("http://") or None
            )
        if kind == "otlp-http":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )

            return HttpSpanExporter(endpoint=endpoint or None)
    except ImportError as exc:
        package = (
            "opentelemetry-exporter-otlp-proto-grpc"
            if kind == "otlp-grpc"
            else ("opentelemetry-exporter-otlp-proto-http")
        )
        raise ConfigError(
            f"tracing.exporter = {kind!r} needs the package {package} ({exc.name} is missing)",
            hint=f"pip install 'msgr-bridge[otel]' (or pip install {package})",
        ) from None
    raise ConfigError(
        f"tracing.exporter: {kind!r} is not an exporter", hint="none, console, otlp-grpc, otlp-http"
    )


def configure_tracing(settings: Any) -> TracingHandle | None:
    """Start recording spans as ``settings.tracing`` says; None for ``exporter = "none"`` (nothing is
    loaded, and a tracer an embedding application or a test installed with ``tracing.install`` stays).

    Call ``shutdown()`` on the handle when the bridge stops: it exports what is still queued."""
    section = settings.tracing
    if section.exporter == "none":
        return None
    sdk = _sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from .. import __version__

    provider = sdk.TracerProvider(
        resource=Resource.create({"service.name": section.service_name, "service.version": __version__}),
        sampler=ParentBased(TraceIdRatioBased(section.sample_ratio)),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(section.exporter, section.endpoint)))
    tracing.install(provider.get_tracer("msgr_bridge"))
    return _Handle(provider)


def use_exporter(exporter: Any) -> TracingHandle:
    """Record spans into ``exporter`` synchronously (tests: an ``InMemorySpanExporter``)."""
    sdk = _sdk()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = sdk.TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider.get_tracer("msgr_bridge"))
    return _Handle(provider)


class _Handle:
    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        tracing.uninstall()
        self._provider.shutdown()
