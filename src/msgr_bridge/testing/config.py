"""Settings for tests that run a bridge with the loopback network, which is off unless configured.

The loopback network is for tests and plugin authors: ``[plugins] allow`` leaves it out by default
(``config.sections.DEFAULT_ALLOWED``). A test that runs a bridge with loopback accounts says so:
``load_settings(overrides=with_loopback({...}))``, or ``loopback_env()`` for a bridge in a subprocess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config.sections import DEFAULT_ALLOWED

LOOPBACK = "loopback"
ALLOW_WITH_LOOPBACK: tuple[str, ...] = (*DEFAULT_ALLOWED, LOOPBACK)
"""The default allow list plus the loopback network."""


def with_loopback(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``overrides`` for ``load_settings`` with ``[plugins] allow`` naming loopback too (any allow list it
    already has is kept, loopback added)."""
    out = dict(overrides or {})
    plugins = dict(out.get("plugins") or {})
    allow = list(plugins.get("allow") or ALLOW_WITH_LOOPBACK)
    plugins["allow"] = allow if LOOPBACK in allow or "*" in allow else [*allow, LOOPBACK]
    out["plugins"] = plugins
    return out


def loopback_env() -> dict[str, str]:
    """The environment that allows loopback in a ``msgr-bridge run`` subprocess."""
    return {"MSGR_BRIDGE__PLUGINS__ALLOW": ",".join(ALLOW_WITH_LOOPBACK)}
