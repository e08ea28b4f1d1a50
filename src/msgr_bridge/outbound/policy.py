"""The outbound policy engine: every impersonated send is checked by a list of rules before it is queued.

A rule is any object with a ``name`` and ``async def check(request: PolicyRequest) -> Decision``. Rules
come from plugins (the ``register_policy_rules(config)`` hook) and from the ``[policy]`` config section
(``msgr_bridge.outbound.policy_rules``: DLP patterns, attachment rules, destination rules, send caps).

A decision is one of:

* ``allow``: nothing to say;
* ``deny`` with a ``reason`` the sender sees (``PolicyDenied``); evaluation stops there;
* ``redact``: the rule returns a transformed request (e.g. a card number replaced), which later rules see;
* ``hold``: the send waits for the sender's confirmation (a later deny still wins).

``PolicyEngine.evaluate(request)`` runs the rules in order and returns a ``PolicyOutcome``: the final
request, the final action and every decision, which the caller writes to the audit log. A rule that
raises is treated as a denial (fail closed) and recorded as such, so a broken plugin cannot wave sends
through. A rule may also define ``async def record(request, outcome)``, called once the outcome lets the
send go ahead (send caps count there, so denied sends do not use up a user's quota).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import structlog

from ..errors import PolicyDenied
from ..schema import OutboundMessage

_log = structlog.get_logger("msgr_bridge.outbound.policy")
_DEBUG_LOGGER = logging.getLogger("msgr_bridge.outbound.policy")


class PolicyAction(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REDACT = "redact"
    HOLD = "hold"


_SEVERITY = {PolicyAction.ALLOW: 0, PolicyAction.REDACT: 1, PolicyAction.HOLD: 2, PolicyAction.DENY: 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRequest:
    """One outbound send as the policy sees it: who sends what, through which account, to where."""

    tenant: str
    user: str
    """The Msgr user on whose behalf the bridge sends (the impersonated sender)."""
    account_id: str
    network: str
    conversation_id: str
    message: OutboundMessage

    def with_message(self, message: OutboundMessage) -> PolicyRequest:
        return replace(self, message=message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What one rule decided. Use the constructors: ``Decision.allow(rule)``, ``.deny(rule, reason)``,
    ``.redact(rule, request, reason)``, ``.hold(rule, reason)``."""

    rule: str
    action: PolicyAction
    reason: str = ""
    request: PolicyRequest | None = None
    """The transformed request, for ``redact`` only."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Audit details (which patterns matched, counts); never the matched text itself."""

    @classmethod
    def allow(cls, rule: str, **details: Any) -> Decision:
        return cls(rule=rule, action=PolicyAction.ALLOW, details=details)

    @classmethod
    def deny(cls, rule: str, reason: str, **details: Any) -> Decision:
        return cls(rule=rule, action=PolicyAction.DENY, reason=reason, details=details)

    @classmethod
    def redact(cls, rule: str, request: PolicyRequest, reason: str, **details: Any) -> Decision:
        return cls(rule=rule, action=PolicyAction.REDACT, reason=reason, request=request, details=details)

    @classmethod
    def hold(cls, rule: str, reason: str, **details: Any) -> Decision:
        return cls(rule=rule, action=PolicyAction.HOLD, reason=reason, details=details)

    def audit_details(self) -> dict[str, Any]:
        """A JSON-safe summary for the audit log."""
        return {"rule": self.rule, "action": self.action.value, "reason": self.reason, **dict(self.details)}


@runtime_checkable
class PolicyRule(Protocol):
    name: str

    async def check(self, request: PolicyRequest) -> Decision: ...


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """The final request (after redactions), the final action and every rule's decision, in order."""

    request: PolicyRequest
    action: PolicyAction
    decisions: tuple[Decision, ...]

    @property
    def allowed(self) -> bool:
        """True when the send may go ahead now (allowed, possibly redacted)."""
        return self.action in (PolicyAction.ALLOW, PolicyAction.REDACT)

    @property
    def deciding(self) -> Decision | None:
        """The decision that set the final action (the denial, the hold), if any."""
        for d in self.decisions:
            if d.action is self.action and self.action is not PolicyAction.ALLOW:
                return d
        return None

    @property
    def reason(self) -> str:
        d = self.deciding
        return d.reason if d else ""

    def raise_if_denied(self) -> None:
        """Raise ``PolicyDenied`` (reason shown to the sender) when the outcome is a denial."""
        if self.action is PolicyAction.DENY:
            d = self.deciding
            raise PolicyDenied(self.reason, rule=d.rule if d else None)


class PolicyEngine:
    """Runs rules in order. Build it with the plugin rules and the config rules (``rules_from_config``)."""

    def __init__(self, rules: Iterable[PolicyRule] = ()) -> None:
        self.rules: list[PolicyRule] = []
        for rule in rules:
            self.add(rule)

    def add(self, rule: PolicyRule) -> None:
        name = getattr(rule, "name", None)
        if not isinstance(name, str) or not name or not callable(getattr(rule, "check", None)):
            raise TypeError(
                f"{rule!r} is not a policy rule (it needs a `name` and `async def check(request)`)"
            )
        if any(r.name == name for r in self.rules):
            raise ValueError(f"two policy rules are named {name!r}; rule names must be unique")
        self.rules.append(rule)

    @classmethod
    def from_hook_results(
        cls, results: Sequence[Sequence[PolicyRule] | None], extra: Iterable[PolicyRule] = ()
    ) -> PolicyEngine:
        """From ``pm.hook.register_policy_rules(config=...)`` results (a list per plugin), then ``extra``."""
        rules = [r for group in results for r in (group or ())]
        return cls([*rules, *extra])

    async def evaluate(self, request: PolicyRequest, *, dry_run: bool = False) -> PolicyOutcome:
        """Run the rules. ``dry_run`` is for (the API's check of a multipart send before its
        files are stored): rules with state, like send caps, do not count it."""
        current = request
        decisions: list[Decision] = []
        final = PolicyAction.ALLOW
        for rule in self.rules:
            try:
                decision = await rule.check(current)
                if not isinstance(decision, Decision):
                    raise TypeError(f"check() returned {type(decision).__name__}, not a Decision")
                if decision.action is PolicyAction.REDACT and decision.request is None:
                    raise TypeError("a redact decision must carry the transformed request")
            except Exception as exc:  # fail closed: a broken rule denies, and says so
                _log.error("policy.rule_failed", rule=rule.name, error=f"{type(exc).__name__}: {exc}")
                decision = Decision.deny(
                    rule.name,
                    "this message could not be checked by the sending policy; try again later",
                    error=type(exc).__name__,
                )
            decisions.append(decision)
            if decision.action is PolicyAction.REDACT and decision.request is not None:
                current = decision.request
            if _SEVERITY[decision.action] > _SEVERITY[final]:
                final = decision.action
            if decision.action is PolicyAction.DENY:
                break
        outcome = PolicyOutcome(current, final, tuple(decisions))
        if outcome.allowed and not dry_run:
            for rule in self.rules:
                record = getattr(rule, "record", None)
                if record is not None:
                    await record(current, outcome)
        # Every send passes here: a plain allow is debug (and skipped cheaply when debug is off: this is the
        # send path); anything a rule changed is worth an operator's eye.
        if final is PolicyAction.ALLOW and not _DEBUG_LOGGER.isEnabledFor(logging.DEBUG):
            return outcome
        emit = _log.debug if final is PolicyAction.ALLOW else _log.info
        emit(
            "policy.evaluated",
            action=final.value,
            rules=[d.rule for d in decisions if d.action is not PolicyAction.ALLOW],
            account_id=request.account_id,
            conversation_id=request.conversation_id,
        )
        return outcome
