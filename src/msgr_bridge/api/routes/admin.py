"""Operations for the owner (``admin:*``): API tokens (create, list, revoke) and ``audit verify`` -- the
same operations as ``msgr-bridge tokens|audit``, each recorded in the audit log with the token (or web
session) as actor (``api/admin_ops.py``). The outbox's operations are in ``outbox.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import ConfigDict, Field

from ...errors import TokenUnknown
from ...store.tokens import Action, InvalidScope, TokenInfo
from ..auth import require, tokens_changed
from ..bodies import Body, read_json
from ..common import admin_of, json_ok
from ..openapi import op
from ..problems import ApiProblem, validation_problem

routes = web.RouteTableDef()


class NewTokenBody(Body):
    """A new API token: a name, its scopes (``read:*``, ``send:<account>``, ``admin:*``) and its lifetime."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "phone", "scopes": ["read:*"], "ttl_s": 86400}]}
    )
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=50)
    ttl_s: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)


DOCS = [
    op("GET", "/v1/tokens", "API tokens of this tenant (never their secret)", scope="admin"),
    op("POST", "/v1/tokens", "Create an API token (shown once)", scope="admin", model=NewTokenBody, ok="201"),
    op("DELETE", "/v1/tokens/{token_id}", "Revoke an API token", scope="admin"),
    op("GET", "/v1/audit/verify", "Check the audit log's hash chain", scope="admin"),
]


def _actor(token: TokenInfo) -> str:
    return f"token:{token.id}"


def token_json(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "user": info.user_id,
        "scopes": [str(s) for s in info.scopes],
        "status": info.status(),
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
    }


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    infos = await admin_of(request).tokens()
    return json_ok({"tokens": [token_json(i) for i in infos]})


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    actor = require(request, Action.ADMIN)
    body = await read_json(request, NewTokenBody)
    ttl = timedelta(seconds=body.ttl_s) if body.ttl_s else None
    try:
        new = await admin_of(request).create_token(_actor(actor), name=body.name, scopes=body.scopes, ttl=ttl)
    except InvalidScope as exc:
        raise validation_problem([{"field": "scopes", "message": exc.message}]) from None
    return json_ok(token_json(new.info) | {"token": new.token}, status=201)


@routes.delete("/v1/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    actor = require(request, Action.ADMIN)
    token_id = request.match_info["token_id"]
    try:
        info = await admin_of(request).revoke_token(_actor(actor), token_id)
    except TokenUnknown:
        raise ApiProblem(404, "token_not_found", f"no API token {token_id!r}") from None
    tokens_changed(request)  # its event streams end now, not at their next check
    return json_ok(token_json(info))


@routes.get("/v1/audit/verify")
async def audit_verify(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    report = await admin_of(request).verify_audit()
    return json_ok(
        {
            "ok": report.ok,
            "rows_checked": report.rows_checked,
            "head": f"{report.head_seq}:{report.head_hash}" if report.head_hash else None,
            "broken_seq": report.broken_seq,
            "problem": report.problem,
            "detail": report.detail,
            "explanation": report.explain(),
        }
    )
