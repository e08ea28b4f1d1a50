"""The operations sections: ``[tracing]``, ``[metrics]`` and ``[alerts]`` (see docs/operations.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .fields import Name, Port, Seconds, url_check
from .sections import Section, _networks

__all__ = ["AlertRule", "AlertsSection", "MetricsSection", "TracingSection"]


class TracingSection(Section):
    exporter: Literal["none", "console", "otlp-grpc", "otlp-http"] = Field(
        "none",
        description='where spans go: "none" (tracing off), "console" (stdout, for debugging), "otlp-grpc" or '
        '"otlp-http" (an OpenTelemetry collector; needs the [otel] extra)',
    )
    endpoint: Annotated[str, url_check("http", "https")] = Field(
        "",
        description="the collector's URL, e.g. http://127.0.0.1:4317 (grpc) or "
        "http://127.0.0.1:4318/v1/traces (http); empty: the exporter's default or "
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    service_name: str = Field("msgr-bridge", min_length=1, description="the service.name of every span")
    sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="the share of new traces recorded (a trace is kept or dropped whole)"
    )


class MetricsSection(Section):
    enabled: bool = Field(True, description="serve /metrics (Prometheus text exposition)")
    port: Port | None = Field(
        None,
        description="serve /metrics on a port of its own (with host) instead of the API's port (unset: "
        "the API's)",
    )
    host: str = Field(
        "127.0.0.1", min_length=1, description="the address of the metrics port, when port is set"
    )
    auth: Literal["token", "none"] = Field(
        "token",
        description='"token": an admin-scope API token is needed (Authorization: Bearer); "none": anyone '
        "who reaches the port may scrape",
    )
    max_account_series: int = Field(
        200,
        ge=0,
        le=10_000,
        description="accounts kept in the per-account gauges (sync lag, credential expiry), the worst first",
    )


class AlertRule(BaseModel):
    """One threshold rule; ``kind`` says what it watches (docs/operations.md has the table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    kind: Literal[
        "failure_rate", "sync_lag", "credential_expiry", "dead_letters", "bad_credentials", "deaf", "quiet"
    ]
    threshold: float = Field(0.0, ge=0.0)
    window_s: Seconds = 900.0
    min_events: int = Field(1, ge=1)
    network: Name | None = None

    @model_validator(mode="after")
    def _sane(self) -> AlertRule:
        if self.kind == "failure_rate" and not 0 < self.threshold <= 1:
            raise ValueError(f"alert {self.name}: a failure_rate threshold is a fraction in (0, 1]")
        if self.kind in ("sync_lag", "quiet", "dead_letters") and self.threshold <= 0:
            raise ValueError(f"alert {self.name}: a {self.kind} rule needs a threshold above 0")
        return self


SHIPPED_RULES: tuple[AlertRule, ...] = (
    AlertRule(name="delivery-failures", kind="failure_rate", threshold=0.25, window_s=900, min_events=20),
    AlertRule(name="sync-lag", kind="sync_lag", threshold=3600),
    AlertRule(name="credentials-expiring", kind="credential_expiry", threshold=259200),
    AlertRule(name="dead-letters", kind="dead_letters", threshold=1),
    AlertRule(name="bad-credentials", kind="bad_credentials"),
    AlertRule(name="deaf-connector", kind="deaf", window_s=3600),
)


class AlertsSection(Section):
    interval_s: Seconds = Field(60.0, description="seconds between two evaluations of the rules")
    rules: list[AlertRule] = Field(
        default_factory=lambda: list(SHIPPED_RULES),
        description="the threshold rules (docs/operations.md: kinds, thresholds, what each means)",
    )
    webhook_url: Annotated[str, url_check("http", "https")] = Field(
        "",
        description="POST every alert (and its resolution) as JSON to this URL (empty: log and metric only)",
    )
    webhook_timeout_s: Seconds = Field(5.0, description="seconds one webhook call may take")
    webhook_retries: int = Field(2, ge=0, le=10, description="further tries of a failed webhook call")
    webhook_allow_networks: Annotated[list[str], BeforeValidator(_networks)] = Field(
        [],
        description='private or loopback networks the webhook may reach anyway, e.g. ["10.0.0.0/8"] '
        "(empty: public addresses only)",
    )

    @model_validator(mode="after")
    def _unique(self) -> AlertsSection:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("alerts.rules: every rule needs a name of its own")
        return self
