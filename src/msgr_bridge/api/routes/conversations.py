"""Conversations of an account: list (unread counts, last message), members, capabilities.

The list is paginated: ``limit`` (1..500, default 100) conversations ordered by id, and ``next_cursor``
(opaque; null on the last page) to pass as ``cursor`` for the next page. A page costs two queries however
many conversations it holds; ``unread`` stops counting at 999 (``unread_capped`` is then true).
"""

from __future__ import annotations

import base64

from aiohttp import web

from ...store.tokens import Action
from ..bodies import int_query
from ..common import account_for, accounts_of, capabilities_of, conversation_for, json_ok, queries_of
from ..openapi import op
from ..paths import path_id, path_param
from ..problems import validation_problem

routes = web.RouteTableDef()
BASE = "/v1/accounts/{account_id}/conversations"
DOCS = [
    op(
        "GET",
        BASE,
        "Conversations with unread counts and last message, cursor-paginated",
        scope="read",
        query=("cursor", "limit"),
    ),
    op("GET", BASE + "/{conversation_id}/members", "Members of a conversation", scope="read"),
    op("GET", BASE + "/{conversation_id}/capabilities", "What can be done in a conversation", scope="read"),
]


@routes.get(BASE)
async def list_conversations(request: web.Request) -> web.Response:
    record = await account_for(request, Action.READ)
    limit = int_query(request, "limit", 100, lo=1, hi=500) or 100
    after = _decode_cursor(request.query.get("cursor"))
    page = await queries_of(request).conversation_page(
        record.id, record.network, record.remote_user_id, after=after, limit=limit + 1
    )
    more = len(page) > limit
    page = page[:limit]
    next_cursor = _encode_cursor(page[-1].id) if more else None
    return json_ok({"conversations": [c.to_json() for c in page], "next_cursor": next_cursor})


def _encode_cursor(conversation_id: str) -> str:
    return base64.urlsafe_b64encode(conversation_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise validation_problem(
            [{"field": "cursor", "message": "not a cursor from this list's next_cursor"}]
        ) from None


@routes.get(BASE + "/{conversation_id}/members")
async def members(request: web.Request) -> web.Response:
    record, conv = await conversation_for(request, Action.READ)
    users = await queries_of(request).members(record.id, conv)
    return json_ok({"conversation_id": conv, "path_id": path_id(conv), "members": users})


@routes.get(BASE + "/{conversation_id}/capabilities")
async def capabilities(request: web.Request) -> web.Response:
    record = await account_for(request, Action.READ)
    conv = path_param(request, "conversation_id")
    caps = capabilities_of(accounts_of(request), record, conv)
    return json_ok(
        {
            "network": record.network,
            "conversation_id": conv,
            "path_id": path_id(conv),
            "capabilities": caps.model_dump(mode="json"),
        }
    )
