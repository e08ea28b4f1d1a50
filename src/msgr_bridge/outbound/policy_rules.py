"""The built-in policy rules, configured from the ``[policy]`` section (``rules_from_config``).

* ``DlpRule``: regexes and keywords over the message text (and formatted text). Built-in detectors:
  ``card`` (13-19 digit card numbers that pass the Luhn check: a random long number does not trigger),
  ``aws`` (``AKIA...`` access key ids), ``github`` (``ghp_``/``gho_``/... tokens), ``slack``
  (``xoxb-``/``xoxp-``/``xoxa-``...), ``private_key`` (PEM ``-----BEGIN ... PRIVATE KEY-----``),
  ``stripe`` (``sk_live_...``). Each pattern has its own action: deny, redact or hold.
* ``AttachmentPolicy``: allowed and refused MIME types (wildcards like ``image/*``) and a size limit.
* ``DestinationPolicy``: per workspace (tenant), which users may send to which networks and conversations.
* ``SendCapRule``: at most N sends per user per window (sliding).

Example::

    [policy.dlp]
    builtin = ["card", "github", "slack", "stripe", { name = "aws", action = "deny" }]
    action = "redact"                 # default for built-ins and keywords
    keywords = ["project nightingale"]
    [[policy.dlp.patterns]]
    name = "internal-host"
    regex = '\\b[a-z0-9-]+\\.corp\\.example\\b'
    action = "deny"

    [policy.attachments]
    allow = ["image/*", "application/pdf"]
    max_size = 10485760

    [[policy.destinations]]            # a tenant with entries may send only where an entry allows
    tenant = "acme"
    users = ["*"]
    networks = ["slack", "xmpp"]
    conversations = ["*"]

    [policy.send_caps]
    max = 30
    window_s = 60
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ..errors import ConfigError
from .policy import Decision, PolicyAction, PolicyOutcome, PolicyRequest, PolicyRule


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card_ok(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group(0))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


@dataclass(frozen=True, slots=True)
class DlpPattern:
    """One detector: ``regex`` (compiled), an optional ``validate`` for each match, and its action."""

    name: str
    regex: re.Pattern[str]
    action: PolicyAction = PolicyAction.REDACT
    validate: Callable[[re.Match[str]], bool] | None = None
    label: str = ""

    def matches(self, text: str) -> list[re.Match[str]]:
        return [m for m in self.regex.finditer(text) if self.validate is None or self.validate(m)]


BUILTIN_PATTERNS: dict[str, tuple[str, Callable[[re.Match[str]], bool] | None, str]] = {
    "card": (r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", _card_ok, "card number"),
    "aws": (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", None, "AWS access key"),
    "github": (
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        None,
        "GitHub token",
    ),
    "slack": (r"\bxox[bpars]-[A-Za-z0-9-]{10,}\b", None, "Slack token"),
    "private_key": (
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?",
        None,
        "private key",
    ),
    "stripe": (r"\b(?:sk|rk)_live_[0-9A-Za-z]{16,}\b", None, "Stripe secret key"),
}


def builtin_pattern(name: str, action: PolicyAction = PolicyAction.REDACT) -> DlpPattern:
    try:
        regex, validate, label = BUILTIN_PATTERNS[name]
    except KeyError:
        raise ConfigError(
            f"policy.dlp.builtin: unknown detector {name!r}", hint=f"use any of {', '.join(BUILTIN_PATTERNS)}"
        ) from None
    return DlpPattern(name, re.compile(regex), action, validate, label)


def keyword_pattern(keyword: str, action: PolicyAction = PolicyAction.REDACT) -> DlpPattern:
    words = [re.escape(w) for w in keyword.split()]
    if not words:
        raise ConfigError("policy.dlp.keywords: an empty keyword would match everything")
    regex = re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)
    return DlpPattern(f"keyword:{keyword}", regex, action, None, "keyword")


@dataclass
class DlpRule:
    """Checks text and formatted text against patterns; the strictest matching pattern's action wins."""

    patterns: Sequence[DlpPattern]
    name: str = "dlp"

    async def check(self, request: PolicyRequest) -> Decision:
        msg = request.message
        hits: dict[str, DlpPattern] = {}
        for pattern in self.patterns:
            for text in (msg.text, msg.formatted or ""):
                if text and pattern.matches(text):
                    hits[pattern.name] = pattern
        if not hits:
            return Decision.allow(self.name)
        labels = sorted({p.label or p.name for p in hits.values()})
        matched = sorted(hits)
        if any(p.action is PolicyAction.DENY for p in hits.values()):
            return Decision.deny(
                self.name,
                f"this message looks like it contains a {', '.join(labels)}; it was not sent",
                patterns=matched,
            )
        if any(p.action is PolicyAction.HOLD for p in hits.values()):
            return Decision.hold(
                self.name,
                f"this message may contain a {', '.join(labels)}; confirm to send it",
                patterns=matched,
            )
        text, formatted = msg.text, msg.formatted
        for pattern in hits.values():
            text = self._redact(pattern, text)
            formatted = self._redact(pattern, formatted) if formatted else formatted
        redacted = msg.model_copy(update={"text": text, "formatted": formatted})
        return Decision.redact(
            self.name,
            request.with_message(redacted),
            f"{', '.join(labels)} removed before sending",
            patterns=matched,
        )

    @staticmethod
    def _redact(pattern: DlpPattern, text: str) -> str:
        tag = f"[redacted {pattern.label or pattern.name}]"
        return pattern.regex.sub(
            lambda m: tag if pattern.validate is None or pattern.validate(m) else m.group(0), text
        )


@dataclass
class AttachmentPolicy:
    """Refuses attachments by MIME type (``deny`` first, then ``allow`` if given) and by size."""

    allow: Sequence[str] = ()
    deny: Sequence[str] = ()
    max_size: int | None = None
    name: str = "attachments"

    async def check(self, request: PolicyRequest) -> Decision:
        for att in request.message.attachments:
            mime = att.mime_type.lower()
            if any(fnmatchcase(mime, p.lower()) for p in self.deny) or (
                self.allow and not any(fnmatchcase(mime, p.lower()) for p in self.allow)
            ):
                return Decision.deny(
                    self.name, f"files of type {mime} may not be sent here", attachment=att.name
                )
            if self.max_size is not None and att.size is not None and att.size > self.max_size:
                return Decision.deny(
                    self.name,
                    f"{att.name} is {att.size} bytes; the limit is {self.max_size} bytes",
                    attachment=att.name,
                )
        return Decision.allow(self.name)


@dataclass(frozen=True, slots=True)
class DestinationEntry:
    tenant: str
    users: tuple[str, ...] = ("*",)
    networks: tuple[str, ...] = ("*",)
    conversations: tuple[str, ...] = ("*",)

    def permits(self, r: PolicyRequest) -> bool:
        return (
            fnmatchcase(r.tenant, self.tenant)
            and any(fnmatchcase(r.user, u) for u in self.users)
            and any(fnmatchcase(r.network, n) for n in self.networks)
            and any(fnmatchcase(r.conversation_id, c) for c in self.conversations)
        )


@dataclass
class DestinationPolicy:
    """A tenant with entries may send only where one of its entries allows; other tenants are unaffected."""

    entries: Sequence[DestinationEntry]
    name: str = "destinations"

    async def check(self, request: PolicyRequest) -> Decision:
        mine = [e for e in self.entries if fnmatchcase(request.tenant, e.tenant)]
        if not mine or any(e.permits(request) for e in mine):
            return Decision.allow(self.name)
        return Decision.deny(
            self.name,
            f"you may not send to {request.conversation_id} on {request.network} from this workspace",
        )


@dataclass
class SendCapRule:
    """At most ``max_sends`` allowed sends per (tenant, user) in any ``window_s`` seconds."""

    max_sends: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    name: str = "send_caps"
    _sent: dict[tuple[str, str], deque[float]] = field(default_factory=dict, repr=False)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        q = self._sent.setdefault(key, deque())
        horizon = self.clock() - self.window_s
        while q and q[0] <= horizon:
            q.popleft()
        return q

    async def check(self, request: PolicyRequest) -> Decision:
        used = len(self._recent((request.tenant, request.user)))
        if used >= self.max_sends:
            return Decision.deny(
                self.name,
                f"you have sent {used} messages in the last {self.window_s:g} seconds; wait a moment",
                limit=self.max_sends,
            )
        return Decision.allow(self.name, used=used)

    async def record(self, request: PolicyRequest, outcome: PolicyOutcome) -> None:
        self._recent((request.tenant, request.user)).append(self.clock())


# --- configuration ------------------------------------------------------------------------------------------


def _action(value: Any, where: str) -> PolicyAction:
    try:
        action = PolicyAction(str(value))
    except ValueError:
        action = PolicyAction.ALLOW
    if action is PolicyAction.ALLOW:
        raise ConfigError(f"{where}: {value!r} is not a DLP action", hint="use deny, redact or hold")
    return action


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(str(v) for v in value)


def rules_from_config(policy: Mapping[str, Any] | None) -> list[PolicyRule]:
    """Build the configured rules from the ``[policy]`` section (a mapping; see the module docs)."""
    policy = policy or {}
    rules: list[PolicyRule] = []
    dlp = policy.get("dlp")
    if dlp:
        default = _action(dlp.get("action", "redact"), "policy.dlp.action")
        patterns = []
        for i, b in enumerate(dlp.get("builtin", ())):  # "card", or {name = "card", action = "deny"}
            if isinstance(b, Mapping):
                action = _action(b.get("action", default.value), f"policy.dlp.builtin[{i}].action")
                patterns.append(builtin_pattern(str(b.get("name")), action))
            else:
                patterns.append(builtin_pattern(str(b), default))
        patterns += [
            keyword_pattern(k, default) for k in _strings(dlp.get("keywords", ()), "policy.dlp.keywords")
        ]
        for i, p in enumerate(dlp.get("patterns", ())):
            where = f"policy.dlp.patterns[{i}]"
            try:
                regex = re.compile(str(p["regex"]))
            except KeyError:
                raise ConfigError(f"{where} needs a regex") from None
            except re.error as exc:
                raise ConfigError(f"{where}.regex is not a valid regular expression: {exc}") from None
            action = _action(p.get("action", default.value), f"{where}.action")
            patterns.append(
                DlpPattern(str(p.get("name", f"pattern-{i}")), regex, action, None, str(p.get("label", "")))
            )
        rules.append(DlpRule(patterns))
    att = policy.get("attachments")
    if att:
        max_size = att.get("max_size")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise ConfigError("policy.attachments.max_size must be a number of bytes")
        rules.append(
            AttachmentPolicy(
                _strings(att.get("allow", ()), "policy.attachments.allow"),
                _strings(att.get("deny", ()), "policy.attachments.deny"),
                max_size,
            )
        )
    dests = policy.get("destinations")
    if dests:
        entries = []
        for i, d in enumerate(dests):
            where = f"policy.destinations[{i}]"
            if "tenant" not in d:
                raise ConfigError(f"{where} needs a tenant (use '*' for every workspace)")
            entries.append(
                DestinationEntry(
                    str(d["tenant"]),
                    _strings(d.get("users", ["*"]), f"{where}.users"),
                    _strings(d.get("networks", ["*"]), f"{where}.networks"),
                    _strings(d.get("conversations", ["*"]), f"{where}.conversations"),
                )
            )
        rules.append(DestinationPolicy(entries))
    caps = policy.get("send_caps")
    if caps:
        max_sends, window = caps.get("max"), caps.get("window_s", 60)
        if (
            not isinstance(max_sends, int)
            or max_sends < 1
            or not isinstance(window, int | float)
            or window <= 0
        ):
            raise ConfigError("policy.send_caps needs max (>= 1) and window_s (seconds, > 0)")
        rules.append(SendCapRule(max_sends, float(window)))
    return rules
