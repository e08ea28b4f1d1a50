"""docs/operations.md names every metric and every log event the code writes; the Grafana dashboard is valid
JSON and queries only metrics that exist (and every metric appears on it)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from msgr_bridge.observability.metrics import METRICS, Metrics

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
LEVELS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "msg"}
EVENT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$|^alert$")


def log_events() -> dict[str, str]:
    """Every event name passed to a logger (``log.info("inbound.quarantined", ...)``) in the core and the
    shipped connectors (tests and test helpers left out), with one file that writes it."""
    found: dict[str, str] = {}
    for root in (ROOT / "src", ROOT / "plugins"):
        for path in root.rglob("*.py"):
            if "tests" in path.parts or "testing" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                    and EVENT.match(node.args[0].value)
                ):
                    found.setdefault(node.args[0].value, str(path.relative_to(ROOT)))
    return found


def test_the_scan_finds_log_events() -> None:
    events = log_events()
    assert {"inbound.quarantined", "alert", "database.unavailable", "irc.connected"} <= set(events)


def test_every_log_event_is_documented() -> None:
    text = DOC.read_text()
    missing = {e: f for e, f in log_events().items() if f"`{e}`" not in text}
    assert missing == {}, "document these log events in docs/operations.md"


def test_every_metric_is_documented() -> None:
    text = DOC.read_text()
    assert [name for name in METRICS if f"`{name}`" not in text] == []


def _queried(expr: str) -> set[str]:
    return set(re.findall(r"\bmsgr_[a-z_]+", expr))


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = {sample.name for family in Metrics().registry.collect() for sample in family.samples} | set(
        METRICS
    )
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            queried |= _queried(target["expr"])
    histograms = {n for n, s in METRICS.items() if s.kind == "histogram"}
    for name in queried:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in exported or base in histograms, f"the dashboard queries {name}, which does not exist"
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in queried}
    assert set(METRICS) - shown == set(), "every metric has a panel"
