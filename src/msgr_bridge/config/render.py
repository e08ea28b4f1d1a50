"""Rendering the settings for operators (``msgr-bridge config check``, the audit log) without secrets."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..observability.logging import looks_secret
from .settings import Settings

__all__ = ["effective_config"]


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _render(value: Any, key: str = "", *, by_key: bool = False) -> Any:
    """Redact URL passwords everywhere, and (in free-form network tables) secret-looking plain values."""
    if isinstance(value, dict):
        return {k: _render(v, str(k), by_key=by_key or k == "networks") for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, key, by_key=by_key) for v in value]
    if isinstance(value, str):
        if by_key and looks_secret(key) and "://" not in value:
            return "***"
        return _redact_url(value) if "://" in value else value
    return value


def effective_config(settings: Settings) -> dict[str, Any]:
    """The settings as plain data for ``msgr-bridge config check``: references shown, secrets never.

    Secret references are shown as written (they are names, not values, and are never resolved here);
    passwords inside URLs become ``***``.
    """
    rendered: dict[str, Any] = _render(settings.model_dump(mode="json"))
    return rendered
