"""``/health`` (the process is up, or degraded) and ``/ready`` (the database answers and the connectors
have started).

Without a token both say only ok or not: ``{"status": "ok" | "degraded"}`` and ``{"ready": bool, "status":
...}``. The details (database error text, plugin errors, account ids and their states) go only to an
``admin:*`` token, since they name accounts and can carry internal addresses.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import is_admin
from ..keys import BRIDGE_KEY

routes = web.RouteTableDef()


def _visible(request: web.Request, report: dict[str, Any]) -> dict[str, Any]:
    return report if is_admin(request) else {"status": report["status"]}


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    return web.json_response(_visible(request, await bridge.health()))


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    report = await bridge.health()
    ok = report["database"]["ok"] and bridge.started
    return web.json_response({"ready": ok, **_visible(request, report)}, status=200 if ok else 503)
