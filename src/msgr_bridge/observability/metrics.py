"""The bridge's metrics: ``prometheus-client`` instruments in one registry of the bridge's own.

``Metrics`` owns a ``CollectorRegistry`` (not the process-wide default one, so an embedding application and
tests keep theirs apart). The code that counts calls ``add``/``observe`` with a name from this module;
``sampled.py`` sets the gauges (outbox depth, account states...) right before a scrape; ``render()`` is the
Prometheus text exposition that ``/metrics`` serves. ``value(name, **labels)`` reads a total back (tests,
alerts).

Label cardinality is bounded on purpose: ``network``, ``stage``, ``category``, ``outcome``, ``state`` and
``rule`` take a handful of values each. Only the per-account gauges (sync lag, credential expiry) carry an
``account`` label, and they keep at most ``[metrics] max_account_series`` accounts (the worst first).
Every metric is listed with its meaning and what to do about it in ``docs/operations.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE",
    "METRICS",
    "Metrics",
    "Spec",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# counters
MESSAGES_IN = "msgr_messages_in_total"
MESSAGES_OUT = "msgr_messages_out_total"
ERRORS = "msgr_errors_total"
DEAD_LETTERS = "msgr_dead_letters_total"
RATE_LIMIT_WAITS = "msgr_rate_limit_waits_total"
RATE_LIMIT_WAIT_SECONDS = "msgr_rate_limit_wait_seconds_total"
QUARANTINED = "msgr_quarantined_total"
CREDENTIALS_EXPIRING = "msgr_credentials_expiring_total"
CREDENTIALS_EXPIRED = "msgr_credentials_expired_total"
AUDIT_ENTRIES = "msgr_audit_entries_total"
ALERTS = "msgr_alerts_total"
ALERT_WEBHOOK_FAILURES = "msgr_alert_webhook_failures_total"
# histograms
STAGE_SECONDS = "msgr_stage_seconds"
# gauges (set before each scrape by ``sampled.py``, or by the alert evaluator)
OUTBOX_DEPTH = "msgr_outbox_depth"
OUTBOX_OLDEST_AGE = "msgr_outbox_oldest_age_seconds"
OUTBOX_DEAD = "msgr_outbox_dead"
QUARANTINE_ROWS = "msgr_quarantine_rows"
SYNC_LAG = "msgr_sync_lag_seconds"
CREDENTIAL_EXPIRY = "msgr_credential_expiry_seconds"
CONNECTOR_ACCOUNTS = "msgr_connector_accounts"
STREAM_CLIENTS = "msgr_event_stream_clients"
STREAM_QUEUED = "msgr_event_stream_queued_events"
STREAM_MAX_QUEUED = "msgr_event_stream_max_queued_events"
STREAM_LAGGED = "msgr_event_stream_lagged_clients"
ALERT_FIRING = "msgr_alert_firing"
ACCOUNT_SERIES_OMITTED = "msgr_account_series_omitted"

ERROR_CATEGORIES = (
    "quarantined",
    "db_refused",
    "persist_retry",
    "ack_failed",
    "send_retry",
    "send_failed",
    "dead_letter",
    "connector_crashed",
)
"""The values of ``msgr_errors_total{category}`` (documented in docs/operations.md)."""

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class Spec:
    kind: str
    """counter, histogram or gauge"""
    help: str
    labels: tuple[str, ...] = ()


METRICS: dict[str, Spec] = {
    MESSAGES_IN: Spec(
        "counter", "messages received from a network and stored (new, not links)", ("network",)
    ),
    MESSAGES_OUT: Spec(
        "counter", "outbound actions finished by the delivery worker, by outcome", ("network", "outcome")
    ),
    ERRORS: Spec("counter", "errors by category (see docs/operations.md)", ("category",)),
    DEAD_LETTERS: Spec("counter", "outbox entries given up (dead-lettered)", ("network",)),
    RATE_LIMIT_WAITS: Spec(
        "counter",
        "sends that waited for a rate limit (local bucket or the platform's)",
        ("network", "source"),
    ),
    RATE_LIMIT_WAIT_SECONDS: Spec("counter", "seconds of rate-limit waits asked for", ("network", "source")),
    QUARANTINED: Spec("counter", "inbound payloads set aside (unconvertible or refused)", ("network",)),
    CREDENTIALS_EXPIRING: Spec("counter", "credentials found close to their expiry"),
    CREDENTIALS_EXPIRED: Spec("counter", "credentials found past their expiry"),
    AUDIT_ENTRIES: Spec("counter", "audit log entries written by the core", ("action",)),
    ALERTS: Spec("counter", "alerts raised (a rule went from ok to firing)", ("rule",)),
    ALERT_WEBHOOK_FAILURES: Spec("counter", "alert webhook calls that failed after their retries"),
    STAGE_SECONDS: Spec(
        "histogram",
        "time spent in one pipeline stage (inbound per batch, outbound per request or send)",
        ("direction", "stage"),
    ),
    OUTBOX_DEPTH: Spec("gauge", "outbox entries waiting or in flight", ("state",)),
    OUTBOX_OLDEST_AGE: Spec("gauge", "age of the oldest queued or sending outbox entry (0: none)"),
    OUTBOX_DEAD: Spec("gauge", "outbox entries dead-lettered and not yet retried or cancelled"),
    QUARANTINE_ROWS: Spec("gauge", "quarantined payloads kept in the database"),
    SYNC_LAG: Spec("gauge", "seconds since the account's last successful sync", ("network", "account")),
    CREDENTIAL_EXPIRY: Spec(
        "gauge",
        "seconds until the account's soonest credential expires (negative: expired)",
        ("network", "account"),
    ),
    CONNECTOR_ACCOUNTS: Spec("gauge", "accounts by network and connection state", ("network", "state")),
    STREAM_CLIENTS: Spec("gauge", "event-stream clients connected (WebSocket and SSE)"),
    STREAM_QUEUED: Spec("gauge", "events queued for event-stream clients, all clients together"),
    STREAM_MAX_QUEUED: Spec("gauge", "events queued for the most lagging event-stream client"),
    STREAM_LAGGED: Spec(
        "gauge", "event-stream clients that overflowed their queue (they resume from a cursor)"
    ),
    ALERT_FIRING: Spec("gauge", "1 while an alert rule fires", ("rule",)),
    ACCOUNT_SERIES_OMITTED: Spec(
        "gauge", "accounts left out of the per-account gauges ([metrics] max_account_series)", ("metric",)
    ),
}
"""Every metric the bridge exports: name, kind, help and labels."""


def _base(name: str) -> str:
    return name.removesuffix("_total")


class Metrics:
    """One registry of every metric in ``METRICS``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._gauges: dict[str, Gauge] = {}
        self._children: dict[tuple[str, ...], Any] = {}
        """(name, *label values) -> the labelled child: ``labels()`` costs more than the increment."""
        for name, spec in METRICS.items():
            if spec.kind == "counter":
                self._counters[name] = Counter(_base(name), spec.help, spec.labels, registry=self.registry)
            elif spec.kind == "histogram":
                self._histograms[name] = Histogram(
                    name, spec.help, spec.labels, registry=self.registry, buckets=STAGE_BUCKETS
                )
            else:
                self._gauges[name] = Gauge(name, spec.help, spec.labels, registry=self.registry)

    def add(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to the counter ``name`` (one of this module's constants)."""
        key = (name, *labels.values())
        child = self._children.get(key)
        if child is None:
            counter = self._counters.get(name)
            if counter is None:
                raise ValueError(f"unknown counter {name!r}; known: {', '.join(self._counters)}")
            child = self._children[key] = counter.labels(**labels) if labels else counter
        child.inc(amount)

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """One observation of the histogram ``name``."""
        key = (name, *labels.values())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._histograms[name].labels(**labels)
        child.observe(seconds)

    def gauge(self, name: str) -> Gauge:
        """The gauge ``name`` (its owner sets it; ``clear()`` before setting a labelled one anew)."""
        return self._gauges[name]

    def value(self, name: str, **labels: str) -> float:
        """The total of ``name`` over the samples whose labels include ``labels`` (a histogram's count)."""
        sample_name = name
        if name in self._histograms:
            sample_name = name + "_count"
        total = 0.0
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name != sample_name:
                    continue
                if all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Nothing to release (kept for callers of the former OpenTelemetry-based registry)."""
