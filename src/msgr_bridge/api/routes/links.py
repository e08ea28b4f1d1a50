"""Account linking as a flow of steps: start, poll, answer, cancel; QR codes as PNG and data URI."""

from __future__ import annotations

import base64
import io
from typing import Any

from aiohttp import web
from pydantic import ConfigDict, Field

from ...linking import LiveFlow
from ...store.tokens import Action
from ..auth import require, token_of
from ..bodies import Body, read_json
from ..common import account_json, accounts_of, json_ok, links_of
from ..openapi import op

routes = web.RouteTableDef()


class StartLink(Body):
    """The network to link an account of, and settings that override the operator's defaults."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"network": "irc", "settings": {"host": "irc.libera.chat", "port": 6697}}]
        }
    )
    network: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)


class Answers(Body):
    """Answers to the current step's fields, by field name. ``{}`` polls a QR or device-code step."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"answers": {"nick": "alice", "channels": ["#bridge"], "port": 6697, "tls": True}}]
        }
    )
    answers: dict[str, str | int | float | bool | list[str] | None]
    """Numbers and booleans are accepted as such (a flow that takes strings gets their text)."""


DOCS = [
    op(
        "POST", "/v1/links", "Start linking an account of a network", scope="admin", model=StartLink, ok="201"
    ),
    op(
        "GET",
        "/v1/links/{flow_id}",
        "Poll a link flow: its status and current step (a rotating QR code or a device code is refreshed)",
        scope="admin",
    ),
    op("POST", "/v1/links/{flow_id}/answers", "Answer the current step", scope="admin", model=Answers),
    op("DELETE", "/v1/links/{flow_id}", "Cancel a link flow", scope="admin"),
    op("GET", "/v1/links/{flow_id}/qr.png", "The current step's QR code as PNG", scope="admin"),
]


def qr_png(data: str) -> bytes:
    out = io.BytesIO()
    import segno  # only while a link flow shows a QR code: its encoder tables are ~3 MB of an idle bridge

    segno.make(data, error="m").save(out, kind="png", scale=6, border=2)
    return out.getvalue()


def flow_json(request: web.Request, live: LiveFlow) -> dict[str, Any]:
    step: dict[str, Any] | None = None
    if live.step is not None:
        step = live.step.model_dump(mode="json")
        if live.step.qr_data:
            png = qr_png(live.step.qr_data)
            step["qr_png_data_uri"] = "data:image/png;base64," + base64.b64encode(png).decode()
            step["qr_png_url"] = f"/v1/links/{live.id}/qr.png"
    return {
        "id": live.id,
        "network": live.network,
        "status": live.status,
        "step": step,
        "error": live.error,
        "hint": live.hint,
        "account": account_json(accounts_of(request), live.account) if live.account else None,
    }


@routes.post("/v1/links")
async def start(request: web.Request) -> web.Response:
    token = require(request, Action.ADMIN)
    body = await read_json(request, StartLink)
    live = await links_of(request).start(
        body.network, body.settings, user_id=token.user_id, actor=f"token:{token.id}"
    )
    return json_ok(flow_json(request, live), status=201)


@routes.get("/v1/links/{flow_id}")
async def poll(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    return json_ok(flow_json(request, await links_of(request).poll(request.match_info["flow_id"])))


@routes.post("/v1/links/{flow_id}/answers")
async def answer(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    body = await read_json(request, Answers)
    live = await links_of(request).submit(request.match_info["flow_id"], body.answers)
    return json_ok(flow_json(request, live))


@routes.delete("/v1/links/{flow_id}")
async def cancel(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    return json_ok(flow_json(request, await links_of(request).cancel(request.match_info["flow_id"])))


@routes.get("/v1/links/{flow_id}/qr.png")
async def qr(request: web.Request) -> web.Response:
    token_of(request)
    require(request, Action.ADMIN)
    live = links_of(request).get(request.match_info["flow_id"])
    if live.step is None or not live.step.qr_data:
        raise web.HTTPNotFound(reason="the current step has no QR code")
    return web.Response(body=qr_png(live.step.qr_data), content_type="image/png")
