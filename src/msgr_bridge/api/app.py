"""The HTTP API server (aiohttp), in the bridge's own process and event loop.

This module builds the ``aiohttp.web.Application`` and runs it; routes live in ``routes/``, one module per
resource. The composition root (``msgr_bridge.app``) passes the running ``Bridge`` in, and routes read
everything they need from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .routes import health

if TYPE_CHECKING:
    from ..app import Bridge

BRIDGE_KEY: web.AppKey[Bridge] = web.AppKey("bridge")


def build_app(bridge: Bridge) -> web.Application:
    app = web.Application(client_max_size=bridge.settings.api.max_body_bytes)
    app[BRIDGE_KEY] = bridge
    app.add_routes(health.routes)
    return app


class ApiServer:
    """Start and stop the API on ``host:port``; ``port=0`` picks a free port (see ``bound_port``)."""

    def __init__(self, bridge: Bridge, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._runner = web.AppRunner(build_app(bridge), handle_signals=False, access_log=None, shutdown_timeout=5.0)
        self._site: web.TCPSite | None = None

    async def start(self) -> None:
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()

    @property
    def bound_port(self) -> int:
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
