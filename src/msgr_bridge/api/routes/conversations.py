"""Conversations of an account: list (unread counts, last message), members, capabilities."""

from __future__ import annotations

from aiohttp import web

from ...store.repos.entities import ChannelRepo, MembershipRepo
from ...store.tokens import Action
from ..common import account_for, bridge_of, capabilities_of, json_ok
from ..openapi import op
from ..queries import summary

routes = web.RouteTableDef()
BASE = "/v1/accounts/{account_id}/conversations"
DOCS = [
    op("GET", BASE, "Conversations with unread counts and last message", scope="read"),
    op("GET", BASE + "/{conversation_id}/members", "Members of a conversation", scope="read"),
    op("GET", BASE + "/{conversation_id}/capabilities", "What can be done in a conversation", scope="read"),
]


@routes.get(BASE)
async def list_conversations(request: web.Request) -> web.Response:
    record = await account_for(request, Action.READ)
    bridge = bridge_of(request)
    out = []
    for c in await ChannelRepo(bridge.db).list(record.id):
        info = await summary(bridge.db, record.id, record.network, c.remote_id, record.remote_user_id)
        out.append({"id": c.remote_id, "name": c.name, "type": c.type.value, "topic": c.topic, **info})
    return json_ok({"conversations": out})


@routes.get(BASE + "/{conversation_id}/members")
async def members(request: web.Request) -> web.Response:
    record = await account_for(request, Action.READ)
    conv = request.match_info["conversation_id"]
    users = await MembershipRepo(bridge_of(request).db).members(record.id, conv)
    return json_ok({"conversation_id": conv, "members": users})


@routes.get(BASE + "/{conversation_id}/capabilities")
async def capabilities(request: web.Request) -> web.Response:
    record = await account_for(request, Action.READ)
    conv = request.match_info["conversation_id"]
    caps = capabilities_of(bridge_of(request), record, conv)
    return json_ok(
        {"network": record.network, "conversation_id": conv, "capabilities": caps.model_dump(mode="json")}
    )
