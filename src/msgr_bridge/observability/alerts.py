"""Alerts: threshold rules from ``[alerts] rules``, evaluated every ``interval_s`` on a fresh sample.

A rule fires for a *subject* (an account, or the bridge as a whole). When a (rule, subject) starts firing
the evaluator logs one ``alert`` event (error level: ``alert`` = the rule's name, ``kind``, ``subject``,
``value``, ``threshold``, ``reason``, ``hint``), adds one to ``msgr_alerts_total{rule}``, and POSTs it to
the webhook when one is configured; while it keeps firing nothing is repeated; when it stops, one
``alert.resolved`` event (and webhook call) says so. ``msgr_alert_firing{rule}`` is the number of subjects
firing now. The kinds (docs/operations.md has the same table with what to do):

* ``failure_rate``: of the outbound actions finished in the last ``window_s`` (at least ``min_events``),
  the share that failed or were dead-lettered is above ``threshold`` (a fraction);
* ``sync_lag``: a connected account's last successful sync is more than ``threshold`` seconds old;
* ``credential_expiry``: an account's soonest credential expires within ``threshold`` seconds (or has);
* ``dead_letters``: at least ``threshold`` outbox entries are dead-lettered and wait for an operator;
* ``bad_credentials``: an account is in ``bad_credentials`` (the network refused its login);
* ``deaf``: a periodic sync found messages, older than the grace period, that never arrived live, in the
  last ``window_s`` seconds: the connection says it is up but does not hear. This is evidence, not a guess;
  the account is also reconnected by the sync job;
* ``quiet``: a connected account received nothing live for ``threshold`` seconds. A quiet account is not
  necessarily deaf (nobody wrote); use it only for accounts that always have traffic, with a ``network``.

``network`` limits a rule to one network's accounts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ..config.ops_sections import AlertRule
from ..schema import ConnectionState
from . import metrics as m
from .sampled import Sampler, Snapshot
from .webhook import Webhook

log = structlog.get_logger("msgr_bridge.alerts")

__all__ = ["AlertEvaluator", "Finding"]

HINTS = {
    "failure_rate": "look at msgr_errors_total and the outbound.* log events of the failing network",
    "sync_lag": "the account's sync keeps failing or it is not connected: see sync.failed log events",
    "credential_expiry": "relink the account (or rotate the credential) before it expires",
    "dead_letters": "msgr-bridge outbox list --state dead, then outbox retry|cancel each entry",
    "bad_credentials": "the network refused the account's login: relink it",
    "deaf": "the connection was reset; if it recurs, look at the connector's network and its logs",
    "quiet": "check that the account still hears its network (send it a message from another client)",
}
MAX_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    kind: str
    subject: str
    value: float
    threshold: float
    reason: str

    def body(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "alert": self.rule,
            "kind": self.kind,
            "subject": self.subject,
            "value": self.value,
            "threshold": self.threshold,
            "reason": self.reason,
            "hint": HINTS[self.kind],
            "at": datetime.now(UTC).isoformat(),
        }


class AlertEvaluator:
    def __init__(
        self,
        rules: Sequence[AlertRule],
        sampler: Sampler,
        metrics: m.Metrics,
        *,
        interval_s: float = 60.0,
        webhook: Webhook | None = None,
    ) -> None:
        self.rules, self.sampler, self.metrics = list(rules), sampler, metrics
        self.interval_s, self.webhook = interval_s, webhook
        self.firing: dict[tuple[str, str], Finding] = {}
        self._history: deque[tuple[float, dict[str, tuple[float, float]]]] = deque(maxlen=MAX_HISTORY)
        """(monotonic time, network -> (finished, failed)) per evaluation, for failure rates."""
        for rule in self.rules:
            metrics.gauge(m.ALERT_FIRING).labels(rule=rule.name).set(0)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.evaluate_once()
            except Exception as exc:  # the database is down: the next round tries again
                log.warning("alert.evaluation_failed", error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(self.interval_s)

    async def evaluate_once(self) -> list[Finding]:
        """One round; returns the findings that started firing in it."""
        snap = await self.sampler.refresh()
        self._remember_outcomes(snap.at)
        now_firing: dict[tuple[str, str], Finding] = {}
        for rule in self.rules:
            for f in self._check(rule, snap):
                now_firing[(f.rule, f.subject)] = f
        started = [f for key, f in now_firing.items() if key not in self.firing]
        ended = [f for key, f in self.firing.items() if key not in now_firing]
        self.firing = now_firing
        for rule in self.rules:
            n = sum(1 for r, _ in now_firing if r == rule.name)
            self.metrics.gauge(m.ALERT_FIRING).labels(rule=rule.name).set(n)
        for f in started:
            log.error(
                "alert",
                alert=f.rule,
                kind=f.kind,
                subject=f.subject,
                value=round(f.value, 3),
                threshold=f.threshold,
                reason=f.reason,
                hint=HINTS[f.kind],
            )
            self.metrics.add(m.ALERTS, rule=f.rule)
        for f in ended:
            log.info("alert.resolved", alert=f.rule, kind=f.kind, subject=f.subject)
        if self.webhook is not None:
            for status, items in (("firing", started), ("resolved", ended)):
                for f in items:
                    await self.webhook.post(f.body(status))
        return started

    # --- the kinds ----------------------------------------------------------------------------------

    def _check(self, rule: AlertRule, snap: Snapshot) -> list[Finding]:
        accounts = [a for a in snap.accounts if rule.network is None or a.network == rule.network]

        def found(subject: str, value: float, reason: str) -> Finding:
            return Finding(rule.name, rule.kind, subject, value, rule.threshold, reason)

        match rule.kind:
            case "failure_rate":
                return self._failure_rate(rule, snap.at, found)
            case "sync_lag":
                return [
                    found(a.id, lag, f"no successful sync for {lag:.0f}s")
                    for a in accounts
                    if (lag := snap.sync_lag_s.get(a.id, 0.0)) > rule.threshold
                ]
            case "credential_expiry":
                now = datetime.now(UTC)
                out = []
                for a in accounts:
                    if a.credentials_expire_at is None:
                        continue
                    at = a.credentials_expire_at
                    left = ((at if at.tzinfo else at.replace(tzinfo=UTC)) - now).total_seconds()
                    if left <= rule.threshold:
                        word = "expired" if left <= 0 else "expires"
                        out.append(found(a.id, left, f"a credential {word} at {at.isoformat()}"))
                return out
            case "dead_letters":
                dead = snap.outbox.get("dead", 0)
                if dead >= rule.threshold:
                    return [
                        found("outbox", dead, f"{dead} dead-lettered outbox entries wait for an operator")
                    ]
                return []
            case "bad_credentials":
                return [
                    found(a.id, 1, a.state_reason or "the network refused the account's login")
                    for a in accounts
                    if a.state == ConnectionState.BAD_CREDENTIALS
                ]
            case "deaf":
                return [
                    found(a.id, ago, "a periodic sync found messages that never arrived live")
                    for a in accounts
                    if (ago := snap.deaf_ago_s.get(a.id)) is not None and ago <= rule.window_s
                ]
            case _:  # quiet (the config model admits no other kind)
                return [
                    found(a.id, quiet, f"connected, and nothing received for {quiet:.0f}s")
                    for a in accounts
                    if (quiet := snap.quiet_for_s.get(a.id, 0.0)) >= rule.threshold
                ]

    def _remember_outcomes(self, at: float) -> None:
        totals: dict[str, tuple[float, float]] = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name != m.MESSAGES_OUT:
                    continue
                network = sample.labels["network"]
                done, failed = totals.get(network, (0.0, 0.0))
                bad = sample.value if sample.labels["outcome"] in ("failed", "dead") else 0.0
                totals[network] = (done + sample.value, failed + bad)
        self._history.append((at, totals))
        horizon = max((r.window_s for r in self.rules if r.kind == "failure_rate"), default=0.0)
        while len(self._history) > 1 and at - self._history[1][0] >= horizon:
            self._history.popleft()

    def _failure_rate(self, rule: AlertRule, at: float, found: Any) -> list[Finding]:
        base = self._history[0][1]
        for t, totals in self._history:  # the newest reading at least window_s old (or the oldest)
            if at - t >= rule.window_s:
                base = totals
        latest = self._history[-1][1]
        networks = [rule.network] if rule.network else list(latest)
        done = sum(latest.get(n, (0, 0))[0] - base.get(n, (0, 0))[0] for n in networks)
        failed = sum(latest.get(n, (0, 0))[1] - base.get(n, (0, 0))[1] for n in networks)
        if done < rule.min_events or done <= 0:
            return []
        rate = failed / done
        if rate <= rule.threshold:
            return []
        subject = rule.network or "bridge"
        return [found(subject, rate, f"{failed:.0f} of {done:.0f} outbound actions failed recently")]
