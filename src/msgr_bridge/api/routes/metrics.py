"""``/metrics``: the Prometheus text exposition of every metric (``observability.metrics``).

Served on the API's port, or on a port of its own (``[metrics] port``, with ``host``). ``[metrics] auth``
says who may scrape: ``"token"`` (the default) wants an admin-scope API token (``Authorization: Bearer``;
Prometheus sends one with ``authorization: {credentials_file: ...}``), ``"none"`` answers anyone who
reaches the port (bind it to a private address then). ``enabled = false`` serves nothing.
"""

from __future__ import annotations

from aiohttp import web

from ...observability.metrics import CONTENT_TYPE
from .. import openapi
from ..auth import TOKEN_KEY, is_admin
from ..common import metrics_of
from ..problems import ApiProblem

routes = web.RouteTableDef()
DOCS = [openapi.op("GET", "/metrics", "Prometheus metrics (text exposition); see docs/operations.md")]


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    source = metrics_of(request)
    if source.auth == "token" and not is_admin(request):
        if request.get(TOKEN_KEY) is None:
            raise ApiProblem(
                401,
                "token_missing",
                '/metrics needs an admin-scope API token ([metrics] auth = "token")',
                hint="scrape with 'Authorization: Bearer mb_...' of an admin token, or set [metrics] auth",
            )
        raise ApiProblem(403, "scope_missing", "/metrics needs the scope admin:*", scope="admin:*")
    body = await source.scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
