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
from ..common import health_of

routes = web.RouteTableDef()


def _visible(request: web.Request, report: dict[str, Any]) -> dict[str, Any]:
    return report if is_admin(request) else {"status": report["status"]}


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response(_visible(request, await health_of(request).health()))


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    service = health_of(request)
    report = await service.health()
    ok = report["database"]["ok"] and service.started
    return web.json_response({"ready": ok, **_visible(request, report)}, status=200 if ok else 503)
