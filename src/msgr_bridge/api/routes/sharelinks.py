"""Share links: create (JSON for locations and invites, multipart for media and files), list, show,
revoke; and the public, unauthenticated ``/s/{token}`` preview and ``/s/{token}/content`` download."""

from __future__ import annotations

import json
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from pydantic import ConfigDict, Field

from ...media.sharelinks import BINARY_KINDS, LinkInfo, ShareLinkService
from ...store.tokens import Action
from ..auth import require
from ..bodies import Body, open_multipart, read_json
from ..keys import SHARES_KEY
from ..openapi import op
from ..problems import ApiProblem, validation_problem
from .uploads import _chunks

routes = web.RouteTableDef()


class CreateLink(Body):
    """A share link to a location or an invite (media and files are uploaded as multipart instead)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"kind": "location", "target": {"lat": 51.5, "lon": -0.12}, "ttl_s": 3600}]
        }
    )
    kind: Literal["media", "file", "location", "invite"]
    target: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float | None = Field(default=None, gt=0, le=365 * 86400)
    max_views: int | None = Field(default=None, ge=1)


DOCS = [
    op(
        "POST",
        "/v1/share-links",
        "Create a share link (JSON, or multipart with a file)",
        scope="send",
        body="json|multipart",
        ok="201",
        model=CreateLink,
        multipart={
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary"},
                "options": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "description": "JSON: kind (media or file), ttl_s, max_views",
                },
            },
        },
    ),
    op("GET", "/v1/share-links", "List share links", scope="read"),
    op("GET", "/v1/share-links/{link_id}", "One share link", scope="read"),
    op("DELETE", "/v1/share-links/{link_id}", "Revoke a share link (its binary is deleted)", scope="delete"),
    op("GET", "/s/{token}", "Public preview of a share link"),
    op("GET", "/s/{token}/content", "Public download of a shared binary (counts a view)"),
]


def _json(service: ShareLinkService, info: LinkInfo) -> dict[str, Any]:
    return {**info.to_json(), **service.urls(info.id)}


@routes.post("/v1/share-links")
async def create(request: web.Request) -> web.Response:
    require(request, Action.SEND)
    service = request.app[SHARES_KEY]
    if request.content_type.startswith("multipart/"):
        info = await _upload(request, service)
    else:
        body = await read_json(request, CreateLink)
        if body.kind in BINARY_KINDS:
            raise validation_problem(
                [{"field": "kind", "message": "media and files are uploaded as multipart"}]
            )
        info = await service.create(body.kind, body.target, ttl_s=body.ttl_s, max_views=body.max_views)
    return web.json_response(_json(service, info), status=201)


async def _upload(request: web.Request, service: ShareLinkService) -> LinkInfo:
    limit = request.app._client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    reader = await open_multipart(request)
    options: dict[str, Any] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            break
        if part.name == "options":
            try:
                options = json.loads(await part.text())
            except ValueError as exc:
                raise ApiProblem(
                    400, "malformed_json", f"the options part is not valid JSON: {exc}"
                ) from None
            if not isinstance(options, dict):  # "null", a list, a number: was a 500 (TypeError)
                raise validation_problem([{"field": "options", "message": "must be a JSON object"}])
            body = CreateLink.model_validate({"kind": "file", **options})
            options = body.model_dump()
        elif part.name == "file":
            kind = options.get("kind", "file")
            if kind not in BINARY_KINDS:
                raise validation_problem(
                    [{"field": "kind", "message": "must be media or file for an upload"}]
                )
            return await service.upload(
                kind,
                _chunks(part),
                name=part.filename or "file",
                mime_type=part.headers.get("Content-Type", "application/octet-stream"),
                max_bytes=limit,
                ttl_s=options.get("ttl_s"),
                max_views=options.get("max_views"),
            )
    raise validation_problem([{"field": "file", "message": "a 'file' part is required"}])


@routes.get("/v1/share-links")
async def list_links(request: web.Request) -> web.Response:
    require(request, Action.READ)
    service = request.app[SHARES_KEY]
    return web.json_response({"share_links": [_json(service, i) for i in await service.list()]})


@routes.get("/v1/share-links/{link_id}")
async def get_link(request: web.Request) -> web.Response:
    require(request, Action.READ)
    service = request.app[SHARES_KEY]
    return web.json_response(_json(service, await service.get(request.match_info["link_id"])))


@routes.delete("/v1/share-links/{link_id}")
async def revoke(request: web.Request) -> web.Response:
    require(request, Action.DELETE)
    service = request.app[SHARES_KEY]
    return web.json_response(_json(service, await service.revoke(request.match_info["link_id"])))


@routes.get("/s/{token}")
async def preview(request: web.Request) -> web.Response:
    service = request.app[SHARES_KEY]
    token = request.match_info["token"]
    binary = (await service.view(token, count=False)).kind in BINARY_KINDS
    info = await service.view(token, count=not binary)  # binaries count on download
    out = {
        "kind": info.kind,
        "target": dict(info.target),
        "views": info.views,
        "max_views": info.max_views,
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
    }
    if binary:
        out["content_url"] = service.urls(info.id)["url"] + "/content"
    return web.json_response(out)


@routes.get("/s/{token}/content")
async def content(request: web.Request) -> web.StreamResponse:
    service = request.app[SHARES_KEY]
    info = await service.view(request.match_info["token"], count=True)
    if info.storage_key is None:
        raise ApiProblem(404, "share_link_not_found", "this share link has no binary content")
    filename = str(info.target.get("name", "file")).replace('"', "").replace("\n", "")
    resp = web.StreamResponse(
        headers={
            "Content-Type": str(info.target.get("mime_type", "application/octet-stream")),
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    await resp.prepare(request)
    async for chunk in service.storage.open(info.storage_key):
        await resp.write(chunk)
    await resp.write_eof()
    return resp
