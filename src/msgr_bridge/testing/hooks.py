"""Serve connectors' hooks (``/hooks/...``) in a test without a whole bridge.

    registry = HookRegistry(None)                   # the base URL is set once the server listens
    async with serve_hooks(registry) as base:       # http://127.0.0.1:<port>
        ctx = make_context("teams", hooks=registry.for_account("teams", "acct-1"))

The server runs the API's own route module (``msgr_bridge.api.routes.hooks``) with its bounds
(``max_body_bytes``, ``timeout_s``), so a connector's handlers meet what they meet in production. ``links``
(a ``LinkService``-like object with ``flows`` and ``submit``) serves the OAuth link callback too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from ..api.keys import HOOKS_KEY, LINKS_KEY
from ..api.problems import problem_middleware
from ..api.routes import hooks as hook_routes
from ..api.services import HookService
from ..sdk.hooks import HookRegistry

__all__ = ["serve_hooks"]


@asynccontextmanager
async def serve_hooks(
    registry: HookRegistry,
    *,
    links: Any = None,
    max_body_bytes: int = 1024 * 1024,
    timeout_s: float = 10.0,
    host: str = "127.0.0.1",
) -> AsyncIterator[str]:
    found: Any = links or SimpleNamespace(flows={})
    app = web.Application(middlewares=[problem_middleware])
    app[HOOKS_KEY] = HookService(registry, max_body_bytes, timeout_s)
    app[LINKS_KEY] = found
    app.add_routes(hook_routes.routes)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server: Any = site._server
    base = f"http://{host}:{server.sockets[0].getsockname()[1]}"
    registry.base_url = base
    for hooks in registry._accounts.values():
        hooks.base_url = base
    try:
        yield base
    finally:
        await runner.cleanup()
