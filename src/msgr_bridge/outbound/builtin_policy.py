"""The built-in policy plugin: the rules configured in ``[policy]`` reach the engine through the same
``register_policy_rules`` hook as third-party rules (datasette's ``DEFAULT_PLUGINS`` idea), so the plugin
path runs on every start.

The section is validated when the configuration loads (``config.PolicySection``), so by the time this hook
runs a typo has already stopped the bridge with a ``ConfigError``; a broken policy can never be dropped
silently as a failed hook. Config rules come only from here: whoever builds the ``PolicyEngine`` takes
``registry.policy_rules`` and must not add ``rules_from_config`` again (rule names must be unique).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..hookspecs import hookimpl
from .policy import PolicyRule
from .policy_rules import rules_from_config


def policy_config(config: Any) -> Mapping[str, Any]:
    """The ``[policy]`` section of ``config`` as a mapping (a ``Settings``, a mapping, or None)."""
    if config is None:
        return {}
    section = config.get("policy") if isinstance(config, Mapping) else getattr(config, "policy", None)
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return section
    dumped: dict[str, Any] = section.model_dump()
    return dumped


@hookimpl
def register_policy_rules(config: Any) -> list[PolicyRule]:
    """DLP, attachment, destination and send-cap rules from ``[policy]``, in that order."""
    return rules_from_config(policy_config(config))
