"""HTTP callbacks for connectors: a platform calls the bridge, the bridge hands the request to the connector.

Some platforms push instead of being polled (Microsoft Graph's change notifications, OAuth redirects,
webhooks). The bridge's API server has one generic route for them::

    POST|GET /hooks/{network}/{account_id}/{name}     one account's callback named ``name``
    GET      /hooks/{network}/link-callback           the browser redirect ending an OAuth link flow

A connector registers a handler on its context in ``connect()`` and gives the platform the URL::

    url = self.ctx.hooks.register("notify", self.on_notification)   # None: the bridge has no public URL
    ...
    async def on_notification(self, request: HookRequest) -> HookResponse:
        if not request.secret_matches(expected, request.query.get("token")):
            raise HookRefused(403, "unknown sender")
        ...
        return HookResponse(202)

The route needs no bearer token (the platform cannot hold one): **each handler verifies its own secret**
(Graph's ``clientState``, a signature header, a token in the URL) and refuses with ``HookRefused``. The core
bounds everything around it: the body is capped while it is read (``[api] hook_max_body_bytes``), a
handler runs at most ``[api] hook_timeout_s`` (then the platform gets a 504 and the server moves on), at
most ``MAX_CONCURRENT`` calls run per account (then 503), an account registers at most ``MAX_HOOKS``
names, and an unknown network, account or name all answer the same 404. A handler should answer quickly
and do slow work in the connector's own tasks (Graph wants an answer within 3 seconds).

``HookRegistry`` is the core's side (one per bridge); ``Hooks`` is what one account's context holds
(``ctx.hooks``). The default ``Hooks()`` has no public URL: ``register`` then returns None and the connector
falls back to what it does without callbacks (polling).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..errors import BridgeError

__all__ = [
    "LINK_CALLBACK_KEY",
    "MAX_CONCURRENT",
    "MAX_HOOKS",
    "HookRefused",
    "HookRegistry",
    "HookRequest",
    "HookResponse",
    "Hooks",
    "link_callback_url",
]

MAX_HOOKS = 8
"""Names one account may register."""
MAX_CONCURRENT = 16
"""Calls of one account's hooks handled at once; more are answered 503 with Retry-After."""
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
LINK_CALLBACK = "link-callback"
LINK_CALLBACK_KEY = "link_callback_url"
"""The setting a link flow of a connector with ``link_callback = True`` finds its redirect URI under."""


class HookRefused(BridgeError):
    """Raised by a handler to refuse a call (a wrong secret, a malformed body): the caller gets ``status``
    and ``message`` as text; nothing is logged as a failure."""

    code = "hook_refused"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status if 400 <= status < 500 else 400


@dataclass(frozen=True, slots=True)
class HookRequest:
    """One call as the platform sent it; ``body`` is complete (and within the size cap)."""

    method: str
    name: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""
    content_type: str = ""

    def json(self) -> Any:
        """The body as JSON; ``HookRefused(400)`` when it is not."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            raise HookRefused(400, "the body is not valid JSON") from None

    @staticmethod
    def secret_matches(expected: str, given: object) -> bool:
        """Compare a secret in constant time (False for anything that is not a non-empty string)."""
        return bool(expected) and isinstance(given, str) and hmac.compare_digest(expected, given)


@dataclass(frozen=True, slots=True)
class HookResponse:
    status: int = 200
    body: str | bytes = b""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)


HookHandler = Callable[[HookRequest], Awaitable[HookResponse]]


class Hooks:
    """One account's callbacks (``ctx.hooks``)."""

    def __init__(self, base_url: str | None = None, network: str = "", account_id: str = "") -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.network, self.account_id = network, account_id
        self.handlers: dict[str, HookHandler] = {}
        self.running = 0

    def url(self, name: str) -> str | None:
        """The public URL of hook ``name`` (whether registered or not); None without a public URL."""
        _check_name(name)
        if self.base_url is None:
            return None
        return (
            f"{self.base_url}/hooks/{quote(self.network, safe='')}/{quote(self.account_id, safe='')}/{name}"
        )

    def register(self, name: str, handler: HookHandler) -> str | None:
        """Route calls of ``name`` to ``handler`` (replacing an earlier one); returns ``url(name)``."""
        _check_name(name)
        if name not in self.handlers and len(self.handlers) >= MAX_HOOKS:
            raise BridgeError(f"an account registers at most {MAX_HOOKS} hooks", hint="reuse a name")
        self.handlers[name] = handler
        return self.url(name)

    def unregister(self, name: str) -> None:
        self.handlers.pop(name, None)

    def get(self, name: str) -> HookHandler | None:
        return self.handlers.get(name)


class HookRegistry:
    """Every started account's ``Hooks``, by network and account id (the core's side)."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self._accounts: dict[str, Hooks] = {}

    def for_account(self, network: str, account_id: str) -> Hooks:
        hooks = self._accounts.get(account_id)
        if hooks is None or hooks.network != network:
            hooks = self._accounts[account_id] = Hooks(self.base_url, network, account_id)
        return hooks

    def drop(self, account_id: str) -> None:
        self._accounts.pop(account_id, None)

    def find(self, network: str, account_id: str) -> Hooks | None:
        hooks = self._accounts.get(account_id)
        return hooks if hooks is not None and hooks.network == network else None


def link_callback_url(base_url: str, network: str) -> str:
    """Where an OAuth link flow of ``network`` sends the browser back (``redirect_uri``)."""
    return f"{base_url.rstrip('/')}/hooks/{quote(network, safe='')}/{LINK_CALLBACK}"


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise BridgeError(
            f"invalid hook name {name!r}", hint="1-32 characters: lowercase letters, digits, '_' and '-'"
        )
