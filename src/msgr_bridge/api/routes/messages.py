"""Messages: history (cursor pages), send (JSON, or multipart with streamed attachments), edit, delete,
react, mark read, typing, and the delivery status of what was sent.

In a history page, each of the account's own messages lists its ``receipts``: who received it (and when)
and who read it, from the other side's receipts (``message_receipt`` events on the stream); the outbox
entry of a message the bridge sent moves to ``delivered`` and ``read`` with its first such receipts.

Sends and changes are accepted (202) into the outbox and delivered by the delivery worker; poll
``GET /v1/outbox/{outbox_id}`` or watch ``delivery_status`` events on the stream.
"""

from __future__ import annotations

from typing import Any

import anyio
from aiohttp import web
from opentelemetry.trace import SpanKind
from pydantic import AwareDatetime, ConfigDict, Field

from ...observability import tracing
from ...outbound.requests import OutboundRequest
from ...schema import Attachment, ReactionAction
from ...store.repos.outbox import OutboxEntry, OutboxState
from ...store.tokens import Action
from ..auth import require, token_of
from ..bodies import Body, int_query, read_json
from ..common import account_for, accounts_of, conversation_for, json_ok, outbound_of, queries_of, urls_of
from ..keys import SHARES_KEY
from ..openapi import op
from ..paths import path_id, path_param
from ..problems import ApiProblem
from ..queries import message_json
from .uploads import read_multipart_send

routes = web.RouteTableDef()
CONV = "/v1/accounts/{account_id}/conversations/{conversation_id}"
MSG = CONV + "/messages/{message_id}"


class SendBody(Body):
    """A message to send: text and/or attachments (fetched by URL; upload files with multipart instead)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": "See you at 6?", "reply_to": "m-123", "idempotency_key": "client-42"},
                {"text": "Happy birthday!", "send_at": "2030-05-01T08:00:00+02:00"},
                {
                    "text": "the plan",
                    "attachments": [{"name": "plan.pdf", "url": "https://example.org/plan.pdf"}],
                },
            ]
        }
    )
    text: str = ""
    reply_to: str | None = None
    thread_id: str | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    attachments: tuple[Attachment, ...] = ()
    send_at: AwareDatetime | None = None
    """Schedule the send (RFC 3339 with an offset, in the future, at most a year ahead): it waits
    ``scheduled`` in the outbox until then (``GET /v1/outbox?state=scheduled``)."""


class EditBody(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "See you at 7?"}]})
    text: str = Field(min_length=1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class ReactBody(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"emoji": "👍", "action": "add"}]})
    emoji: str = Field(min_length=1, max_length=64)
    action: ReactionAction = ReactionAction.ADD


class ReadBody(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"up_to_id": "m-123"}]})
    up_to_id: str = Field(min_length=1)


class TypingBody(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"active": True}]})
    active: bool = True


MULTIPART_SEND = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {
            "type": "string",
            "description": "JSON: the send body (SendBody) without attachments",
            "contentMediaType": "application/json",
        },
        "file": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "the files",
        },
    },
}
DOCS = [
    op(
        "GET",
        CONV + "/messages",
        "History, newest first, cursor-paginated",
        scope="read",
        query=("before", "limit"),
    ),
    op(
        "POST",
        CONV + "/messages",
        "Send (JSON, or multipart with attachments)",
        scope="send",
        body="json|multipart",
        ok="202",
        model=SendBody,
        multipart=MULTIPART_SEND,
    ),
    op("PATCH", MSG, "Edit a message", scope="edit", model=EditBody, ok="202"),
    op("DELETE", MSG, "Delete a message", scope="delete", ok="202"),
    op("POST", MSG + "/reactions", "Add or remove a reaction", scope="react", model=ReactBody, ok="202"),
    op("POST", CONV + "/read", "Mark read up to a message", scope="send", model=ReadBody, ok="202"),
    op("POST", CONV + "/typing", "Send a typing notification", scope="send", model=TypingBody),
    op("GET", "/v1/outbox/{outbox_id}", "Delivery status of a sent message or change", scope="read"),
]


def entry_json(e: OutboxEntry) -> dict[str, Any]:
    return {
        "outbox_id": e.id,
        "txn_id": e.txn_id,
        "action": e.action.value,
        "state": e.state.value,
        "account_id": e.account_id,
        "conversation_id": e.conversation_id,
        "conversation_path_id": path_id(e.conversation_id),
        "remote_id": e.remote_id,
        "attempts": e.attempts,
        "error": e.last_error,
        "send_at": e.next_attempt_at.isoformat() if e.state is OutboxState.SCHEDULED else None,
        "text": e.payload.get("text") if e.state is OutboxState.SCHEDULED else None,
        "created_at": e.created_at.isoformat(),
        "updated_at": e.updated_at.isoformat(),
    }


async def _submit(request: web.Request, action: Action, fields: dict[str, Any]) -> web.Response:
    return json_ok(entry_json(await _submitted(request, action, fields)), status=202)


async def _submitted(request: web.Request, action: Action, fields: dict[str, Any]) -> OutboxEntry:
    if not tracing.enabled():
        return await _accept(request, action, fields)
    traceparent = request.headers.get("traceparent")  # a client's own trace is continued
    attributes = {"http.method": request.method, "msgr.action": str(fields.get("action", action.value))}
    with tracing.span(
        "outbound.api",
        {"traceparent": traceparent} if traceparent else None,
        root=traceparent is None,
        kind=SpanKind.SERVER,
        attributes=attributes,
    ):
        return await _accept(request, action, fields)


async def _accept(request: web.Request, action: Action, fields: dict[str, Any]) -> OutboxEntry:
    record = await account_for(request, action)
    target = fields.get("target_id")
    if target is not None and not await queries_of(request).message_exists(
        record.id, record.network, path_param(request, "conversation_id"), target
    ):
        # Nothing is queued: a network would refuse it, or worse, act on a message id it does not check.
        raise ApiProblem(
            404,
            "message_not_found",
            f"no message {target!r} in conversation {request.match_info['conversation_id']!r}",
            hint="use a message id from this conversation's history",
        )
    outbound = outbound_of(request)
    if outbound is None:
        raise ApiProblem(503, "not_ready", "the bridge is still starting", hint="retry in a moment")
    outbound_request = OutboundRequest(
        tenant=record.tenant,
        user=token_of(request).user_id,
        account_id=record.id,
        conversation_id=path_param(request, "conversation_id"),
        **fields,
    )
    return await outbound.submit(outbound_request)


@routes.get(CONV + "/messages")
async def history(request: web.Request) -> web.Response:
    record, conversation_id = await conversation_for(request, Action.READ)
    before = int_query(request, "before", None, lo=1)
    limit = int_query(request, "limit", 50, lo=1, hi=500) or 50
    page = await queries_of(request).history(
        record.id, record.network, conversation_id, before=before, limit=limit
    )
    next_cursor = page[-1].id if len(page) == limit else None
    own = [m.id for m in page if m.sender.is_self]
    receipts = await queries_of(request).receipts(own)
    return json_ok(
        {
            "messages": [message_json(m, receipts.get(m.id, []) if m.sender.is_self else None) for m in page],
            "next_cursor": next_cursor,
        }
    )


@routes.post(CONV + "/messages")
async def send(request: web.Request) -> web.Response:
    if not request.content_type.startswith("multipart/"):
        body = await read_json(request, SendBody)
        for attachment in body.attachments:  # a file: URL, a path or a refused address: 422, nothing queued
            urls_of(request).check_reference(attachment.url)
        fields = {"action": "send", **body.model_dump(exclude_defaults=True)}
        return await _submit(request, Action.SEND, fields)
    record = await account_for(request, Action.SEND)
    stored: list[str] = []
    kept = False
    try:
        body = await read_multipart_send(request, record, SendBody, stored)
        fields = {"action": "send", **body.model_dump(exclude_defaults=True)}
        entry = await _submitted(request, Action.SEND, fields)
        kept = entry.state is not OutboxState.FAILED
        return json_ok(entry_json(entry), status=202)
    finally:
        if not kept:  # a refused or failed send keeps no file
            with anyio.CancelScope(shield=True):
                for share_id in stored:
                    await request.app[SHARES_KEY].revoke(share_id)


@routes.patch(MSG)
async def edit(request: web.Request) -> web.Response:
    body = await read_json(request, EditBody)
    fields = {
        "action": "edit",
        "target_id": path_param(request, "message_id"),
        **body.model_dump(exclude_none=True),
    }
    return await _submit(request, Action.EDIT, fields)


@routes.delete(MSG)
async def delete(request: web.Request) -> web.Response:
    return await _submit(
        request, Action.DELETE, {"action": "delete", "target_id": path_param(request, "message_id")}
    )


@routes.post(MSG + "/reactions")
async def react(request: web.Request) -> web.Response:
    body = await read_json(request, ReactBody)
    fields = {
        "action": "react",
        "target_id": path_param(request, "message_id"),
        "emoji": body.emoji,
        "reaction": body.action,
    }
    return await _submit(request, Action.REACT, fields)


@routes.post(CONV + "/read")
async def mark_read(request: web.Request) -> web.Response:
    body = await read_json(request, ReadBody)
    return await _submit(request, Action.SEND, {"action": "mark_read", "up_to_id": body.up_to_id})


@routes.post(CONV + "/typing")
async def typing(request: web.Request) -> web.Response:
    body = await read_json(request, TypingBody)
    record = await account_for(request, Action.SEND)
    outbound = outbound_of(request)
    if outbound is None:
        raise ApiProblem(503, "not_ready", "the bridge is still starting", hint="retry in a moment")
    sent = await outbound.send_typing(
        OutboundRequest(
            tenant=record.tenant,
            user=token_of(request).user_id,
            account_id=record.id,
            conversation_id=path_param(request, "conversation_id"),
            action="typing",
            active=body.active,
        )
    )
    return json_ok({"sent": sent})


@routes.get("/v1/outbox/{outbox_id}")
async def delivery_status(request: web.Request) -> web.Response:
    entry = await queries_of(request).outbox_entry(request.match_info["outbox_id"])
    if entry is None or entry.tenant != accounts_of(request).tenant:
        raise ApiProblem(
            404, "outbox_entry_not_found", f"no outbox entry {request.match_info['outbox_id']!r}"
        )
    require(request, Action.READ, entry.account_id)
    return json_ok(entry_json(entry))
