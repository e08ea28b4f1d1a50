"""The API depends on the bridge only through ``api/services.py``: no module of ``msgr_bridge.api`` imports
the composition root (``msgr_bridge.app``), not even for typing; ``app`` composes, nothing imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import msgr_bridge.api

API = Path(msgr_bridge.api.__file__).parent


def _imports_of_app(path: Path) -> list[int]:
    depth = len(path.relative_to(API.parent).parts) - 1  # how many dots reach msgr_bridge from this module
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


def test_no_api_module_imports_the_composition_root() -> None:
    offenders = {str(p.relative_to(API)): n for p in sorted(API.rglob("*.py")) if (n := _imports_of_app(p))}
    assert not offenders, f"these API modules import msgr_bridge.app (use api/services.py): {offenders}"
