"""Metrics and spans of the outbound side, kept out of the service and the worker's control flow.

The trace of an outbound action travels in its outbox row (``OutboundRequest.trace``, stored in the
payload), so the delivery worker's spans join the API request's trace even after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

from ..observability import metrics as m
from ..observability import tracing
from ..store.repos.outbox import OutboxEntry
from .delivery_types import Result

log = structlog.get_logger("msgr_bridge.outbound")

FINAL = frozenset({"sent", "failed", "dead"})
ERROR_OF = {"retry": "send_retry", "failed": "send_failed", "dead": "dead_letter"}


def entry_trace(entry: OutboxEntry) -> tracing.Carrier | None:
    """The trace an outbox entry was created under (None: not traced)."""
    trace: Any = entry.payload.get("trace") if isinstance(entry.payload, Mapping) else None
    return trace if isinstance(trace, dict) else None


def count(metrics: m.Metrics | None, r: Result) -> None:
    """Messages out by network and outcome, errors by category, dead letters by network; a dead letter also
    logs its ``alert`` event (error level: the entry, its conversation, why, and what the operator can do)."""
    if r.kind == "dead":
        log.error(
            "alert",
            alert="outbound.dead_lettered",
            outbox_id=r.entry.id,
            account_id=r.entry.account_id,
            conversation_id=r.entry.conversation_id,
            attempts=r.entry.attempts,
            reason=r.error,
            hint="the message waits for an operator: msgr-bridge outbox retry|cancel " + r.entry.id,
        )
    if metrics is None:
        return
    network = r.network or "unknown"
    if r.kind in FINAL:
        metrics.add(m.MESSAGES_OUT, network=network, outcome=r.kind)
    category = ERROR_OF.get(r.kind)
    if category is not None:
        metrics.add(m.ERRORS, category=category)
    if r.kind == "dead":
        metrics.add(m.DEAD_LETTERS, network=network)


@contextmanager
def timed(metrics: m.Metrics | None, stage: str) -> Iterator[None]:
    """``msgr_stage_seconds{direction="out", stage}`` around the block, failures included."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if metrics is not None:
            metrics.observe(m.STAGE_SECONDS, time.perf_counter() - started, direction="out", stage=stage)


def rate_limit_wait(metrics: m.Metrics | None, network: str, source: str, seconds: float) -> None:
    """A send waited for a rate limit: ``source`` is ``local`` (our bucket) or ``platform`` (429...)."""
    if metrics is not None:
        metrics.add(m.RATE_LIMIT_WAITS, network=network, source=source)
        metrics.add(m.RATE_LIMIT_WAIT_SECONDS, max(0.0, seconds), network=network, source=source)


def status_spans(results: Iterable[Result], start_ns: int) -> None:
    """An ``outbound.status`` span per recorded result, under its entry's trace (the commit's time)."""
    end_ns = time.time_ns()
    for r in results:
        trace = entry_trace(r.entry)
        if trace is not None:
            tracing.record_span(
                "outbound.status",
                trace,
                start_ns,
                end_ns,
                attributes={"msgr.result": r.kind, "msgr.outbox_id": r.entry.id},
                error=r.error if r.kind in ("failed", "dead") else None,
            )
