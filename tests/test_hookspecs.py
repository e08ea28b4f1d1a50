"""Every hook is documented (docstring and README), like datasette's test_docs."""

from __future__ import annotations

import inspect
from pathlib import Path

from msgr_bridge import hookspecs

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def spec_names() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, hookspecs.PROJECT + "_spec")
    ]


def test_there_are_hookspecs() -> None:
    assert {"register_connectors", "register_policy_rules", "startup", "shutdown"} <= set(spec_names())


def test_every_hookspec_has_a_docstring_and_is_in_the_readme() -> None:
    for name in spec_names():
        fn = getattr(hookspecs, name)
        assert (fn.__doc__ or "").strip(), f"hookspec {name} has no docstring"
        assert f"`{name}(" in README, f"hookspec {name} is not documented in README.md"
