"""Field types shared by the config sections: ports, durations, names, plugin lists and URL checks.

Each is an ``Annotated`` type whose validator's message becomes the operator-facing half of a
``ConfigError`` (``api.port: must be 0-65535 ...``), so the wording here is what operators read.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

__all__ = ["Name", "PluginNames", "Port", "Seconds", "url_check"]

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _port(v: int) -> int:
    if not 0 <= v <= 65535:
        raise ValueError("must be 0-65535 (0 picks a free port)")
    return v


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError("must be greater than 0")
    return v


def _name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{v!r} is not a valid name: use letters, digits, '_' and '-'")
    return v


def _names(v: Any) -> Any:
    """Lists from the environment: JSON (``["a","b"]``) or comma-separated (``a,b``)."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            import json

            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("not a valid JSON list") from None
        return [p.strip() for p in text.split(",") if p.strip()]
    return v


def _plugin_name(v: str) -> str:
    return v if v == "*" else _name(v)


def url_check(*schemes: str) -> Any:
    """Empty, or a URL of one of ``schemes``; a final ``/`` is dropped from http(s) URLs."""

    def check(v: str) -> str:
        v = v.strip()
        if v and urlsplit(v).scheme not in schemes:
            raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return v.rstrip("/") if v.startswith("http") else v

    return AfterValidator(check)


Port = Annotated[int, AfterValidator(_port)]
Seconds = Annotated[float, AfterValidator(_positive)]
Name = Annotated[str, AfterValidator(_name)]
PluginNames = Annotated[list[Annotated[str, AfterValidator(_plugin_name)]], NoDecode, BeforeValidator(_names)]
