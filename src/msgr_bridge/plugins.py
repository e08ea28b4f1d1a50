"""The plugin manager: built-in plugins, entry-point loading through an allowlist, and failure isolation.

Like datasette, the bridge registers its own built-in parts through the same manager as third-party
plugins, so the plugin path runs on every start. Entry points in the ``msgr_bridge`` group load only when
the config's ``[plugins] allow`` names them (``"*"`` allows all) and ``deny`` does not. A plugin that fails
to import, register or answer a hook is reported with its name and the error, and the others keep running.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
import structlog
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from . import __version__, hookspecs
from .connectors.protocol import ConnectorClass
from .sdk.registration import (
    REQUIRED_METHODS,
    ConnectorDescription,
    lazy_connector,
    validate_connector_class,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "REQUIRED_METHODS",
    "PluginManager",
    "PluginReport",
    "Registry",
    "validate_connector_class",
]

log = structlog.get_logger("msgr_bridge.plugins")

ENTRY_POINT_GROUP = "msgr_bridge"

DEFAULT_PLUGINS: tuple[str, ...] = ("msgr_bridge.outbound.builtin_policy",)
"""Modules registered on every start (built-in parts that are plugins too)."""


@dataclass
class PluginReport:
    name: str
    source: str
    """``builtin``, or the distribution that provides the entry point."""
    version: str | None = None
    loaded: bool = False
    skipped_reason: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "loaded": self.loaded,
            "skipped_reason": self.skipped_reason,
            "error": self.error,
        }


@dataclass
class Registry:
    """What the plugins contributed, plus every problem found on the way."""

    connectors: dict[str, ConnectorClass] = field(default_factory=dict)
    connector_sources: dict[str, str] = field(default_factory=dict)
    policy_rules: list[Any] = field(default_factory=list)
    reports: list[PluginReport] = field(default_factory=list)

    @property
    def errors(self) -> list[PluginReport]:
        return [r for r in self.reports if r.error]


CORE_DISTRIBUTION = "msgr-bridge"


def core_requirement(requires: Iterable[str] | None) -> Requirement | None:
    """The plugin's dependency on msgr-bridge among its ``Requires-Dist`` lines (one that applies without
    extras), or None when it names none."""
    for line in requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != CORE_DISTRIBUTION:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        return req
    return None


def core_range_problem(requires: Iterable[str] | None, core_version: str = __version__) -> str | None:
    """Why a plugin distribution cannot run on this core, from its ``Requires-Dist`` lines; None if it can.

    A plugin declares the cores it works with as an ordinary dependency (``msgr-bridge>=0.1,<0.2``). One
    whose range excludes the running core is refused before it is imported: a plugin built against another
    core's SDK would fail later, at a worse time. A plugin that names no range loads, with a warning.
    """
    req = core_requirement(requires)
    if req is None or not req.specifier or req.specifier.contains(Version(core_version), prereleases=True):
        return None
    return (
        f"built for msgr-bridge {req.specifier}, but this core is {core_version}: "
        f"install a release of the plugin made for msgr-bridge {core_version}"
    )


def _allowed(name: str, allow: Sequence[str], deny: Sequence[str]) -> str | None:
    """None when allowed, else the reason it is skipped."""
    if name in deny:
        return "denied by [plugins] deny"
    if "*" in allow or name in allow:
        return None
    return "not in [plugins] allow"


class PluginManager:
    def __init__(self, *, allow: Sequence[str] = ("*",), deny: Sequence[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        self.registry = Registry()

    # --- loading ------------------------------------------------------------------------------------

    def load(
        self,
        *,
        builtins: Iterable[str] = DEFAULT_PLUGINS,
        entry_points: Iterable[md.EntryPoint] | None = None,
    ) -> Registry:
        for module_name in builtins:
            self._register_module(module_name, source="builtin")
        eps = entry_points if entry_points is not None else md.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            self._load_entry_point(ep)
        self._collect_connectors()
        return self.registry

    def register(self, plugin: object, name: str, *, source: str = "builtin") -> None:
        """Register an already imported plugin object (tests and embedding use this)."""
        report = PluginReport(name=name, source=source)
        self.registry.reports.append(report)
        try:
            self.pm.register(plugin, name=name)
            report.loaded = True
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            log.error("plugin.register_failed", plugin=name, error=report.error)

    def _register_module(self, module_name: str, *, source: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            self._fail(PluginReport(name=module_name, source=source), "import", exc)
            return
        self.register(module, module_name, source=source)

    def _load_entry_point(self, ep: md.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else None
        report = PluginReport(name=ep.name, source=dist, version=version)
        self.registry.reports.append(report)
        reason = _allowed(ep.name, self.allow, self.deny)
        if reason is not None:
            report.skipped_reason = reason
            log.info("plugin.skipped", plugin=ep.name, reason=reason)
            return
        requires = ep.dist.requires if ep.dist is not None else None
        problem = core_range_problem(requires)
        if problem is not None:
            report.error = f"refused: {problem}"
            log.error("plugin.incompatible", plugin=ep.name, distribution=dist, error=report.error)
            return
        core = core_requirement(requires)
        if ep.dist is not None and (core is None or not core.specifier):
            log.warning(
                "plugin.no_core_range",
                plugin=ep.name,
                distribution=dist,
                hint="declare the msgr-bridge versions it works with, e.g. msgr-bridge>=0.1,<0.2",
            )
        try:
            plugin = ep.load()
        except Exception as exc:
            self._fail(report, "import", exc, append=False)
            return
        try:
            self.pm.register(plugin, name=ep.name)
        except Exception as exc:
            self._fail(report, "register", exc, append=False)
            return
        report.loaded = True
        log.info("plugin.loaded", plugin=ep.name, distribution=dist, version=version)

    def _fail(self, report: PluginReport, stage: str, exc: BaseException, *, append: bool = True) -> None:
        report.error = f"failed to {stage}: {type(exc).__name__}: {exc}"
        if append:
            self.registry.reports.append(report)
        log.error("plugin.failed", plugin=report.name, stage=stage, error=report.error)

    # --- hooks, one implementation at a time so one broken plugin cannot hide the others --------------

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook separately, with the subset of kwargs it accepts."""
        hook = getattr(self.pm.hook, hook_name)
        results: list[tuple[str, Any]] = []
        for impl in reversed(hook.get_hookimpls()):  # registration order
            name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            try:
                result = impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})
            except Exception as exc:
                self._hook_failed(name, hook_name, exc)
                continue
            results.append((name, result))
        return results

    def _hook_failed(self, name: str, hook_name: str, exc: BaseException) -> None:
        report = self._report_for(name)
        report.error = f"hook {hook_name} failed: {type(exc).__name__}: {exc}"
        log.error("plugin.hook_failed", plugin=name, hook=hook_name, error=report.error)

    def _report_for(self, name: str) -> PluginReport:
        for r in self.registry.reports:
            if r.name == name:
                return r
        report = PluginReport(name=name, source="unknown")
        self.registry.reports.append(report)
        return report

    def _collect_connectors(self) -> None:
        for name, result in self.call_each("register_connectors"):
            for entry in result or ():
                if isinstance(entry, ConnectorDescription):  # light: the connector module loads later
                    problem, cls = entry.problem(), lazy_connector(entry)
                else:
                    problem, cls = validate_connector_class(entry), entry
                if problem is not None:
                    self._hook_failed(name, "register_connectors", TypeError(problem))
                    continue
                network = cls.network
                if network in self.registry.connectors:
                    self._hook_failed(
                        name,
                        "register_connectors",
                        ValueError(
                            f"network {network!r} is already provided by "
                            f"{self.registry.connector_sources[network]}"
                        ),
                    )
                    continue
                self.registry.connectors[network] = cls
                self.registry.connector_sources[network] = name

    def collect_policy_rules(self, config: Any) -> list[Any]:
        rules: list[Any] = []
        for _name, result in self.call_each("register_policy_rules", config=config):
            rules.extend(result or ())
        self.registry.policy_rules = rules
        return rules
