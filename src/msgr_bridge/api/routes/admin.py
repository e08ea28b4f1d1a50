"""Operations for the owner (``admin:*``): API tokens (create, list, revoke) and ``audit verify`` -- the
same operations as ``msgr-bridge tokens|audit``, each recorded in the audit log with the token (or web
session) as actor. The outbox's operations are in ``outbox.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import ConfigDict, Field

from ...errors import TokenUnknown
from ...store import audit
from ...store.tokens import Action, InvalidScope, TokenInfo, TokenStore
from ..auth import require
from ..bodies import Body, read_json
from ..common import bridge_of, json_ok
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
    bridge = bridge_of(request)
    infos = await TokenStore(bridge.db).list(tenant=bridge.tenant)
    return json_ok({"tokens": [token_json(i) for i in infos]})


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    actor = require(request, Action.ADMIN)
    body = await read_json(request, NewTokenBody)
    bridge = bridge_of(request)
    ttl = timedelta(seconds=body.ttl_s) if body.ttl_s else None
    try:
        async with bridge.db.session() as s:
            new = await TokenStore(bridge.db).create(
                tenant=bridge.tenant, name=body.name, scopes=body.scopes, ttl=ttl, session=s
            )
            await audit.append(
                s,
                _actor(actor),
                "token.create",
                new.info.id,
                {"tenant": bridge.tenant, "name": body.name, "scopes": [str(x) for x in new.info.scopes]},
            )
    except InvalidScope as exc:
        raise validation_problem([{"field": "scopes", "message": exc.message}]) from None
    return json_ok(token_json(new.info) | {"token": new.token}, status=201)


@routes.delete("/v1/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    actor = require(request, Action.ADMIN)
    bridge = bridge_of(request)
    store = TokenStore(bridge.db)
    token_id = request.match_info["token_id"]
    try:
        async with bridge.db.session() as s:
            before = await store.get(token_id, session=s)
            if before.tenant != bridge.tenant:
                raise TokenUnknown(f"no API token with id {token_id!r}")
            info = await store.revoke(token_id, session=s)
            if before.revoked_at is None:
                await audit.append(
                    s, _actor(actor), "token.revoke", info.id, {"tenant": info.tenant, "name": info.name}
                )
    except TokenUnknown:
        raise ApiProblem(404, "token_not_found", f"no API token {token_id!r}") from None
    return json_ok(token_json(info))


@routes.get("/v1/audit/verify")
async def audit_verify(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    async with bridge_of(request).db.session() as s:
        report = await audit.verify(s)
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
