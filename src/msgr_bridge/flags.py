"""Feature flags: a connector, or one capability, switched on for a cohort of users from config.

Operators roll a new network out gradually. ``[flags]`` in the config holds one table per flag, keyed by
what it gates:

* ``[flags.teams]``: linking Teams accounts and sending through them;
* ``[flags."teams.reactions"]``: one capability of one network (the names of ``Capabilities``);
* ``[flags."*.edits"]``: a capability on every network.

A flag is on for a (tenant, user) when ``enabled`` is true and either it names no cohort at all, or the
tenant is in ``tenants``, or the user is in ``users``, or the user falls in the first ``percentage`` percent
by a stable hash of the flag, tenant and user (the same people stay in as the percentage grows). Without a
flag, everything is on. Flags are checked when an account is linked (``LinkService.start``) and when a
message is sent, edited, deleted, reacted to, marked read or typed in (``OutboundService``); a disabled one
is a ``FeatureDisabled`` (HTTP 422, ``code: feature_disabled``, naming the flag).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .errors import BridgeError
from .schema import Capabilities

CAPABILITY_NAMES = frozenset(
    name for name, f in Capabilities.model_fields.items() if f.annotation is bool
) | {"attachments"}

# what each outbound action needs, beyond the network itself
ACTION_CAPABILITIES: Mapping[str, str] = {
    "send": "send",
    "edit": "edits",
    "delete": "deletes",
    "react": "reactions",
    "mark_read": "read_receipts",
    "typing": "typing",
}


class FeatureDisabled(BridgeError):
    """A feature flag keeps this connector or capability off for this user."""

    code = "feature_disabled"

    def __init__(self, flag: str, what: str) -> None:
        super().__init__(
            f"{what} is not enabled for you (feature flag {flag!r})",
            hint=f"the operator enables it in [flags.{_quoted(flag)}]: tenants, users or percentage",
        )
        self.flag = flag


class FlagRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="false switches the feature off for everyone")
    tenants: tuple[str, ...] = Field((), description="tenants that have it")
    users: tuple[str, ...] = Field((), description="users (API token user ids) that have it")
    percentage: Annotated[float, Field(ge=0, le=100)] | None = Field(
        None, description="the share of users that have it, by a stable hash (0-100)"
    )

    def on_for(self, flag: str, tenant: str, user: str | None) -> bool:
        if not self.enabled:
            return False
        if not self.tenants and not self.users and self.percentage is None:
            return True
        if tenant in self.tenants or (user is not None and user in self.users):
            return True
        return self.percentage is not None and bucket(flag, tenant, user) < self.percentage


def bucket(flag: str, tenant: str, user: str | None) -> float:
    """A stable place in [0, 100) for this user under this flag (SHA-256, not Python's salted ``hash``)."""
    digest = hashlib.sha256(f"{flag}\0{tenant}\0{user or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def check_flag_names(flags: Iterable[str]) -> list[str]:
    """Problems with the flag names of a config (a typo would otherwise gate nothing, silently)."""
    problems = []
    for name in flags:
        network, _, capability = name.partition(".")
        if not network or (network == "*" and not capability):
            problems.append(
                f"flags.{name}: name a network (teams), a network's capability (teams.reactions) "
                "or a capability everywhere (*.reactions)"
            )
        elif capability and capability not in CAPABILITY_NAMES:
            problems.append(
                f"flags.{name}: {capability!r} is not a capability; "
                f"one of {', '.join(sorted(CAPABILITY_NAMES))}"
            )
    return problems


class FeatureFlags:
    """The configured flags, answering "may this user use that?"."""

    def __init__(self, rules: Mapping[str, FlagRule]) -> None:
        self.rules = dict(rules)

    def check_network(self, network: str, tenant: str, user: str | None) -> None:
        rule = self.rules.get(network)
        if rule is not None and not rule.on_for(network, tenant, user):
            raise FeatureDisabled(network, f"the {network} network")

    def check_capabilities(
        self, network: str, capabilities: Iterable[str], tenant: str, user: str | None
    ) -> None:
        self.check_network(network, tenant, user)
        for capability in capabilities:
            for name in (f"{network}.{capability}", f"*.{capability}"):
                rule = self.rules.get(name)
                if rule is not None and not rule.on_for(name, tenant, user):
                    raise FeatureDisabled(name, f"{capability} on {network}")


def _quoted(flag: str) -> str:
    return f'"{flag}"' if "." in flag or "*" in flag else flag
