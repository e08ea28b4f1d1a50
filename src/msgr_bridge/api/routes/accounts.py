"""Accounts: list (with state and capabilities), show, unlink; networks and their capabilities."""

from __future__ import annotations

from aiohttp import web

from ...connectors.base import describe
from ...store.tokens import Action
from ..auth import token_of
from ..common import account_for, account_json, accounts_of, json_ok, links_of
from ..openapi import op

routes = web.RouteTableDef()
DOCS = [
    op("GET", "/v1/accounts", "List the linked accounts this token may read", scope="read"),
    op("GET", "/v1/accounts/{account_id}", "One account: state, capabilities", scope="read"),
    op("DELETE", "/v1/accounts/{account_id}", "Unlink: stop, delete secrets and the account", scope="admin"),
    op("GET", "/v1/networks", "Installed networks and their capabilities", scope="read"),
]


@routes.get("/v1/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    accounts, token = accounts_of(request), token_of(request)
    records = await accounts.list()
    visible = [r for r in records if token.allows(Action.READ, r.id)]
    return json_ok({"accounts": [account_json(accounts, r) for r in visible]})


@routes.get("/v1/accounts/{account_id}")
async def get_account(request: web.Request) -> web.Response:
    record = await account_for(request, Action.READ)
    return json_ok(account_json(accounts_of(request), record))


@routes.delete("/v1/accounts/{account_id}")
async def unlink(request: web.Request) -> web.Response:
    record = await account_for(request, Action.ADMIN)
    await links_of(request).unlink(record.id, actor=f"token:{token_of(request).id}")
    return json_ok({"id": record.id, "unlinked": True})


@routes.get("/v1/networks")
async def networks(request: web.Request) -> web.Response:
    connectors = accounts_of(request).networks
    return json_ok({"networks": [describe(cls) for _, cls in sorted(connectors.items())]})
