"""The API depends on the bridge only through ``api/services.py``, and nothing imports the composition root
(``msgr_bridge.app``) back, not even for typing: ``app`` composes (only the CLI, which runs it, imports it).
Route modules reach only the narrow services they are given (below)."""

from __future__ import annotations

import ast
from pathlib import Path

import msgr_bridge.api

API = Path(msgr_bridge.api.__file__).parent
PACKAGE = API.parent
ENTRY_POINTS = {"cli.py"}
"""Modules that may import ``app``: the command line runs the bridge."""


def _imports_of_app(path: Path, root: Path = PACKAGE) -> list[int]:
    depth = len(path.relative_to(root).parts)  # how many dots reach msgr_bridge from this module
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            absolute = node.module == "msgr_bridge.app" or (
                node.module == "msgr_bridge" and "app" in {a.name for a in node.names}
            )
            relative = node.level == depth and (
                node.module == "app" or (not node.module and "app" in {a.name for a in node.names})
            )
            if absolute or relative:
                lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(a.name == "msgr_bridge.app" for a in node.names):
            lines.append(node.lineno)
    return lines


def test_nothing_imports_the_composition_root() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if str(p.relative_to(PACKAGE)) not in ENTRY_POINTS and (n := _imports_of_app(p))
    }
    assert not offenders, (
        f"these modules import msgr_bridge.app (take a narrow Protocol instead): {offenders}"
    )


def test_the_checker_finds_imports_of_app_at_any_depth(tmp_path: Path) -> None:
    root = tmp_path / "msgr_bridge"
    (root / "api" / "routes").mkdir(parents=True)
    cases = {
        "linking.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .app import Bridge\n",
        "api/common.py": "from ..app import Bridge\n",
        "api/routes/x.py": "from ... import app\n",
        "api/__init__.py": "import msgr_bridge.app\n",
        "api/ok.py": "from .app import build_app\nfrom ..api import app\n",  # api.app: not the root
    }
    for name, text in cases.items():
        (root / name).write_text(text)
    found = {name: _imports_of_app(root / name, root) for name in cases}
    assert found == {
        "linking.py": [3],
        "api/common.py": [1],
        "api/routes/x.py": [1],
        "api/__init__.py": [1],
        "api/ok.py": [],
    }


# --- routes get narrow services, one app key each ---------------------------------------------------------

ROUTE_MODULES = [API / "common.py", *sorted((API / "routes").glob("*.py"))]
FORBIDDEN_NAMES = {
    "ApiHost",
    "RouteServices",
    "Bridge",
    "Database",
    "Supervisor",
    "Registry",
    "AccountService",
}
"""Names a route must not import: the bridge, the server's host, the database, what account views hide."""


def _protocols() -> dict[str, type]:
    from msgr_bridge.api import services

    return {
        n: c for n, c in vars(services).items() if isinstance(c, type) and getattr(c, "_is_protocol", False)
    }


def _members(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def _getters() -> dict[str, type]:
    """``common``'s service getters (``accounts_of``...) and the Protocol each returns."""
    import typing

    from msgr_bridge.api import common, services

    found = {}
    for name, fn in vars(common).items():
        if name.endswith("_of") and callable(fn):
            hint = typing.get_type_hints(fn, {**vars(common), **vars(services)}).get("return")
            for arg in (*typing.get_args(hint), hint):
                if isinstance(arg, type) and arg in _protocols().values():
                    found[name] = arg
    return found


def reaches(source: str, getters: dict[str, type], protocols: dict[str, type]) -> list[str]:
    """What a route module uses outside its services: a forbidden import, an app key that is not a service
    key, or an attribute of a service that its Protocol does not declare."""
    found: list[str] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for alias in node.names:
                if alias.name in FORBIDDEN_NAMES or alias.name.endswith("Repo") or alias.name == "BRIDGE_KEY":
                    found.append(f"imports {alias.name} from {module or '.'}")
            if module.endswith(("store.db", "app", "supervisor", "plugins")) and node.level != 1:
                found.append(f"imports {module}")
        elif isinstance(node, ast.Subscript) and _is_request_app(node.value):
            key = node.slice
            if not (isinstance(key, ast.Name) and key.id.endswith("_KEY")):
                found.append(f"request.app[{ast.unparse(key)}]")
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        bound: dict[str, type] = {}
        for arg in fn.args.args:  # a parameter typed by a service Protocol
            if isinstance(arg.annotation, ast.Name) and arg.annotation.id in protocols:
                bound[arg.arg] = protocols[arg.annotation.id]
        for node in ast.walk(fn):  # x = accounts_of(request); a, b = accounts_of(request), ...
            if isinstance(node, ast.Assign | ast.NamedExpr):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    pairs = (
                        zip(target.elts, node.value.elts, strict=False)
                        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                        else [(target, node.value)]
                    )
                    for t, v in pairs:
                        if isinstance(t, ast.Name) and (service := _service_of(v, getters)) is not None:
                            bound[t.id] = service
        for node in ast.walk(fn):
            if not isinstance(node, ast.Attribute):
                continue
            service = _service_of(node.value, getters)
            if service is None and isinstance(node.value, ast.Name):
                service = bound.get(node.value.id)
            if service is not None and node.attr not in _members(service):
                found.append(f"{ast.unparse(node)}: {service.__name__} has no {node.attr!r}")
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and node.id in {"bridge_of", "bridge"}:
                found.append(f"{fn.name} uses {node.id}")
    return found


def _is_request_app(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "app"


def _service_of(node: ast.expr, getters: dict[str, type]) -> type | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return getters.get(node.func.id)
    return None


def test_each_app_key_holds_one_narrow_service() -> None:
    import typing

    from msgr_bridge.api import keys, services

    hints = typing.get_type_hints(
        keys, {**vars(keys), **vars(services), "EventHub": object, "ShareLinkService": object}
    )
    types = {name: typing.get_args(hint)[0] for name, hint in hints.items() if name.endswith("_KEY")}
    assert "BRIDGE_KEY" not in types
    protocols = _protocols()
    for name, service in types.items():
        assert service is object or service in protocols.values(), f"{name} holds {service}"
        if service is not object:
            assert len(_members(service)) <= 8, f"{name}: {service.__name__} is not narrow"
    assert services.ApiHost not in types.values()


def test_route_modules_reach_only_their_services() -> None:
    getters, protocols = _getters(), _protocols()
    assert {"accounts_of", "links_of", "outbound_of", "queries_of", "health_of", "urls_of"} <= set(getters)
    assert {"outbox_of", "admin_of", "search_of", "hooks_of", "metrics_of", "web_of"} <= set(getters)
    offenders = {
        str(p.relative_to(API)): found
        for p in ROUTE_MODULES
        if (found := reaches(p.read_text(), getters, protocols))
    }
    assert not offenders, f"route modules reaching outside their services: {offenders}"


def test_the_checker_finds_reaches_outside_a_service() -> None:
    getters, protocols = _getters(), _protocols()
    bad = """
from ...store.repos.messages import MessageRepo
from ..keys import BRIDGE_KEY

async def handler(request):
    links_of(request).db
    accounts = accounts_of(request)
    accounts.supervisor
    request.app["bridge"]

def helper(views: AccountViews):
    return views.registry
"""
    found = reaches(bad, getters, protocols)
    assert any("MessageRepo" in f for f in found)
    assert any("BRIDGE_KEY" in f for f in found)
    assert any("LinkFlows has no 'db'" in f for f in found)
    assert any("AccountViews has no 'supervisor'" in f for f in found)
    assert any("request.app['bridge']" in f for f in found)
    assert any("AccountViews has no 'registry'" in f for f in found)
    good = "async def h(request):\n    await links_of(request).unlink('a')\n    accounts_of(request).tenant\n"
    assert reaches(good, getters, protocols) == []
