"""The bridge's metrics: OpenTelemetry counters behind one small registry.

``Metrics`` owns an OpenTelemetry ``MeterProvider`` of its own (the process-wide global provider is left
alone, so an embedding application keeps control of it) with an in-memory reader, which tests and the
health endpoint read with ``value(name, **attributes)``. An exporter (Prometheus, OTLP) can be added as
another reader later without touching the code that counts.

Counters (names as exported):

* ``msgr_credentials_expiring_total{network?}``: a credential was found close to its expiry (once per
  credential and expiry date per process);
* ``msgr_credentials_expired_total``: a credential was found past its expiry (its account turned
  ``bad_credentials``);
* ``msgr_audit_entries_total{action}``: audit entries the core wrote.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.metrics import Counter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader

CREDENTIALS_EXPIRING = "msgr_credentials_expiring_total"
CREDENTIALS_EXPIRED = "msgr_credentials_expired_total"
AUDIT_ENTRIES = "msgr_audit_entries_total"

_COUNTERS = {
    CREDENTIALS_EXPIRING: "credentials found close to their expiry",
    CREDENTIALS_EXPIRED: "credentials found past their expiry",
    AUDIT_ENTRIES: "audit log entries written by the core",
}


class Metrics:
    """One registry of counters. ``extra_readers`` adds exporters next to the in-memory reader."""

    def __init__(self, *, extra_readers: tuple[MetricReader, ...] = ()) -> None:
        self._reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self._reader, *extra_readers], shutdown_on_exit=False)
        meter = self.provider.get_meter("msgr_bridge")
        self._counters: dict[str, Counter] = {
            name: meter.create_counter(name, unit="1", description=text) for name, text in _COUNTERS.items()
        }

    def add(self, name: str, amount: int = 1, **attributes: str) -> None:
        """Add ``amount`` to the counter ``name`` (one of this module's constants)."""
        try:
            counter = self._counters[name]
        except KeyError:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(self._counters)}") from None
        counter.add(amount, attributes=attributes or None)

    def value(self, name: str, **attributes: str) -> int:
        """The total of ``name`` over the data points whose attributes include ``attributes``."""
        data = self._reader.get_metrics_data()
        total = 0
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        attrs: dict[str, Any] = dict(point.attributes or {})
                        if all(attrs.get(k) == v for k, v in attributes.items()):
                            total += int(getattr(point, "value", 0))
        return total

    def shutdown(self) -> None:
        self.provider.shutdown()
