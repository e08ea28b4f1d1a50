"""Tracing: one OpenTelemetry trace per message, on the OpenTelemetry *API* only.

The core imports ``opentelemetry-api`` and nothing else; the SDK and the exporters are loaded by
``otel_setup.configure_tracing`` only when ``[tracing] exporter`` names one. Until then ``enabled()`` is
False and every helper here returns at once: the pipelines test that flag before doing any tracing work, so
an unconfigured bridge pays one attribute read per batch or request (``bench/pipeline.py --tracing``
measures both ways).

**The context travels with the message** as a W3C ``traceparent`` carrier (a ``dict[str, str]``, the form a
bus other than the in-memory one could carry too): on ``RawInbound.trace`` and ``StoredEvent.trace`` on the
bus, and in the outbox row's payload (``OutboundRequest.trace``), so an API request, its outbox row and the
delivery worker's send are one trace even across a restart.

The spans (names as exported):

* inbound, one trace per received payload: ``inbound.receive`` (the root, when the connector pushes it),
  then ``inbound.normalize``, ``inbound.dedupe``, ``inbound.persist`` and ``inbound.notify``. Inbound is
  batched: normalize and dedupe are per payload anyway and get a real span each; persist and notify run
  once per batch, so each message gets a span covering the batch's transaction (or publication), with the
  batch size as an attribute and a link to one ``inbound.batch`` span, which links every message of it.
  So a message's own trace shows every stage, and the batch is one click away.
* outbound: ``outbound.api`` (the HTTP request; a ``traceparent`` header from the client is continued),
  ``outbound.impersonation``, ``outbound.policy``, ``outbound.outbox`` (the row's transaction); then, in the
  delivery worker, ``outbound.delivery`` with ``outbound.ratelimit``, ``outbound.send`` (the connector
  call) and ``outbound.status`` (the recorded delivery status).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "Carrier",
    "Parent",
    "carrier",
    "context_of",
    "enabled",
    "install",
    "link_to",
    "record_root",
    "record_span",
    "span",
    "start_root",
    "uninstall",
]

Carrier = dict[str, str]
"""A W3C trace-context carrier: ``{"traceparent": "00-<trace id>-<span id>-01"}``."""

_PROPAGATOR = TraceContextTextMapPropagator()


class _State:
    enabled = False
    tracer: trace.Tracer = trace.NoOpTracer()


_state = _State()


def enabled() -> bool:
    """Whether spans are recorded (an exporter is configured)."""
    return _state.enabled


def install(tracer: trace.Tracer) -> None:
    """Record spans with ``tracer`` from now on (``otel_setup`` calls this)."""
    _state.tracer, _state.enabled = tracer, True


def uninstall() -> None:
    """Back to no tracing (shutdown, tests)."""
    _state.tracer, _state.enabled = trace.NoOpTracer(), False


def carrier(span: Span | None = None) -> Carrier | None:
    """The carrier of ``span`` (default: the current span), or None when nothing is traced."""
    if not _state.enabled:
        return None
    out: Carrier = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    _PROPAGATOR.inject(out, context=ctx)
    return out or None


Parent = Mapping[str, str] | Context | None
"""A carrier, or a context already extracted from one (to parse a carrier once for several spans)."""


def context_of(parent: Parent) -> Context | None:
    """The context a carrier names (None: a new trace)."""
    if not parent:
        return None
    if isinstance(parent, Context):
        return parent
    return _PROPAGATOR.extract(parent)


def link_to(parent: Parent) -> Link | None:
    ctx = context_of(parent)
    if ctx is None:
        return None
    sc = trace.get_current_span(ctx).get_span_context()
    return Link(sc) if sc.is_valid else None


def span(
    name: str,
    parent: Parent = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    links: Sequence[Link] = (),
    attributes: Mapping[str, Any] | None = None,
    root: bool = False,
) -> AbstractContextManager[Span | None]:
    """A span named ``name``, current inside the block, child of ``parent`` (a carrier) or of the current
    span (``root``: of nothing, a new trace). Yields None when tracing is off (a shared no-op context, so
    the off path allocates nothing). An exception leaving the block marks the span as an error."""
    if not _state.enabled:
        return _OFF
    return _span(name, parent, kind, links, attributes, root)


_OFF: AbstractContextManager[None] = nullcontext()


@contextmanager
def _span(
    name: str,
    parent: Parent,
    kind: SpanKind,
    links: Sequence[Link],
    attributes: Mapping[str, Any] | None,
    root: bool,
) -> Iterator[Span]:
    ctx = Context() if root else context_of(parent)
    with _state.tracer.start_as_current_span(
        name, context=ctx, kind=kind, links=links, attributes=attributes
    ) as s:
        yield s


def start_root(name: str, *, attributes: Mapping[str, Any] | None = None) -> Carrier | None:
    """Start and end a root span (a new trace) now; returns its carrier for the stages that follow."""
    if not _state.enabled:
        return None
    s = _state.tracer.start_span(name, context=Context(), kind=SpanKind.CONSUMER, attributes=attributes)
    try:
        return carrier(s)
    finally:
        s.end()


def record_root(
    name: str,
    start_ns: int,
    end_ns: int,
    *,
    links: Sequence[Link] = (),
    attributes: Mapping[str, Any] | None = None,
) -> Carrier | None:
    """A root span (a trace of its own) that already happened; returns its carrier."""
    if not _state.enabled:
        return None
    s = _state.tracer.start_span(
        name, context=Context(), links=links, attributes=attributes, start_time=start_ns
    )
    s.end(end_time=end_ns)
    return carrier(s)


def record_span(
    name: str,
    parent: Parent,
    start_ns: int,
    end_ns: int,
    *,
    links: Sequence[Link] = (),
    attributes: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """A span that already happened (a batch's transaction, seen from one of its messages)."""
    if not _state.enabled:
        return
    s = _state.tracer.start_span(
        name, context=context_of(parent), links=links, attributes=attributes, start_time=start_ns
    )
    if error is not None:
        s.set_status(Status(StatusCode.ERROR, error))
    s.end(end_time=end_ns)
