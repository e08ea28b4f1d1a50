"""``/health`` (the process is up; what is degraded) and ``/ready`` (the database answers and the
connectors have started)."""

from __future__ import annotations

from aiohttp import web

from .. import app as api_app

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    bridge = request.app[api_app.BRIDGE_KEY]
    return web.json_response(await bridge.health())


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    bridge = request.app[api_app.BRIDGE_KEY]
    report = await bridge.health()
    ok = report["database"]["ok"] and bridge.started
    return web.json_response({"ready": ok, **report}, status=200 if ok else 503)
