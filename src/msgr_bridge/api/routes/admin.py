"""Operations for the owner (``admin:*``): the outbox (list, retry, cancel), API tokens (create, list,
revoke) and ``audit verify`` -- the same operations as ``msgr-bridge outbox|tokens|audit``, each recorded in
the audit log with the token (or web session) as actor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import Field

from ...cli_outbox import OutboxEntryNotFound, cancel_entry, list_entries, retry_entry
from ...errors import BridgeError, TokenUnknown
from ...store import audit
from ...store.repos.outbox import OutboxRepo, OutboxState
from ...store.tokens import Action, InvalidScope, TokenInfo, TokenStore
from ..auth import require
from ..bodies import Body, int_query, read_json
from ..common import bridge_of, json_ok
from ..openapi import op
from ..problems import ApiProblem, validation_problem
from .messages import entry_json

routes = web.RouteTableDef()
DOCS = [
    op(
        "GET", "/v1/outbox", "Outbox entries, oldest first, by state", scope="admin", query=("state", "limit")
    ),
    op(
        "POST", "/v1/outbox/{outbox_id}/retry", "Queue a failed, dead or cancelled entry again", scope="admin"
    ),
    op("POST", "/v1/outbox/{outbox_id}/cancel", "Cancel a queued, failed or dead entry", scope="admin"),
    op("GET", "/v1/tokens", "API tokens of this tenant (never their secret)", scope="admin"),
    op("POST", "/v1/tokens", "Create an API token (shown once)", scope="admin", body="json", ok="201"),
    op("DELETE", "/v1/tokens/{token_id}", "Revoke an API token", scope="admin"),
    op("GET", "/v1/audit/verify", "Check the audit log's hash chain", scope="admin"),
]


class NewTokenBody(Body):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=50)
    ttl_s: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)


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


@routes.get("/v1/outbox")
async def outbox(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    bridge = bridge_of(request)
    state = request.query.get("state") or None
    if state is not None and state not in {s.value for s in OutboxState}:
        raise validation_problem([{"field": "state", "message": f"unknown outbox state {state!r}"}])
    limit = int_query(request, "limit", 100, lo=1, hi=500) or 100
    entries = await list_entries(bridge.db, state, tenant=bridge.tenant, limit=limit)
    return json_ok({"entries": [entry_json(e) for e in entries], "states": [s.value for s in OutboxState]})


async def _outbox_change(request: web.Request, verb: str) -> web.Response:
    token = require(request, Action.ADMIN)
    bridge = bridge_of(request)
    outbox_id = request.match_info["outbox_id"]
    found = await OutboxRepo(bridge.db).get(outbox_id)
    try:
        if found is None or found.tenant != bridge.tenant:
            raise OutboxEntryNotFound(
                f"no outbox entry {outbox_id!r}", hint="list entries with GET /v1/outbox"
            )
        change = retry_entry if verb == "retry" else cancel_entry
        entry = await change(bridge.db, outbox_id, actor=_actor(token))
    except OutboxEntryNotFound as exc:
        raise ApiProblem(404, "outbox_entry_not_found", exc.message, hint=exc.hint) from None
    except BridgeError as exc:
        raise ApiProblem(409, "outbox_state_conflict", exc.message, hint=exc.hint) from None
    return json_ok(entry_json(entry))


@routes.post("/v1/outbox/{outbox_id}/retry")
async def retry(request: web.Request) -> web.Response:
    return await _outbox_change(request, "retry")


@routes.post("/v1/outbox/{outbox_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    return await _outbox_change(request, "cancel")


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
