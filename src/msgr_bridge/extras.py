"""Optional parts and the extras that install them.

The embedded default (SQLite, the local keystore, the in-memory limiter) needs none of PostgreSQL's
driver, Redis, Vault or the OpenTelemetry SDK; each is an extra (``msgr-bridge[postgres,redis,vault,otel]``
or ``[all]``) imported only when the config asks for it. ``require`` turns a missing one into a
``ConfigError`` that names the setting and the command that fixes it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("asyncpg",),
    "redis": ("redis",),
    "vault": ("hvac",),
    "s3": ("aiobotocore",),
    "otel": ("opentelemetry.sdk",),
}
"""Each extra and the modules it provides (pyproject.toml's ``[project.optional-dependencies]``)."""


def require(extra: str, *, wanted_by: str) -> None:
    """Import what ``extra`` provides, or explain which setting needs it and how to install it."""
    for module in EXTRAS[extra]:
        import_extra(module, extra=extra, wanted_by=wanted_by)


def import_extra(module: str, *, extra: str, wanted_by: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{wanted_by} needs the optional package {module.split('.')[0]!r}, which is not installed",
            hint=f"pip install 'msgr-bridge[{extra}]' (or [all]), or choose the embedded default",
        ) from exc
