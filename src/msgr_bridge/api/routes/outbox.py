"""The outbox: list entries (scheduled sends among them), change or cancel a scheduled send, cancel or retry
an entry. ``GET /v1/outbox/{outbox_id}`` (one entry) is in ``messages.py``.

A cancel or retry stores a ``delivery_status`` event whose ``state`` is the entry's new state
(``cancelled``, ``queued``): the event stream and the outbox say the same (``api/outbox_ops.py``).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import AwareDatetime, ConfigDict, Field

from ...store.repos.outbox import OutboxEntry, OutboxState
from ...store.tokens import Action
from ..auth import require, token_of
from ..bodies import Body, int_query, read_json
from ..common import json_ok, outbound_of, outbox_of
from ..openapi import op
from ..problems import ApiProblem, validation_problem
from .messages import entry_json

routes = web.RouteTableDef()
ONE = "/v1/outbox/{outbox_id}"


class ChangeScheduled(Body):
    """A scheduled send's new text and/or time (RFC 3339 with an offset, in the future, at most a year)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "See you at 7?", "send_at": "2030-01-01T09:00:00Z"}]}
    )
    text: str | None = Field(default=None, min_length=1)
    send_at: AwareDatetime | None = None


DOCS = [
    op(
        "GET",
        "/v1/outbox",
        "Outbox entries: `state=scheduled` lists scheduled sends, soonest first (others oldest first)",
        scope="read",
        query=("state", "account_id", "limit"),
    ),
    op("PATCH", ONE, "Change a scheduled send's text and/or send_at", scope="send", model=ChangeScheduled),
    op(
        "DELETE", ONE, "Cancel an entry that has not gone out (scheduled, queued, failed, dead)", scope="send"
    ),
    op("POST", ONE + "/retry", "Queue a failed, dead-lettered or cancelled entry again now", scope="admin"),
]


async def _entry(request: web.Request, action: Action) -> OutboxEntry:
    entry = await outbox_of(request).get(request.match_info["outbox_id"])
    if entry is None:
        raise ApiProblem(
            404, "outbox_entry_not_found", f"no outbox entry {request.match_info['outbox_id']!r}"
        )
    require(request, action, entry.account_id)
    return entry


@routes.get("/v1/outbox")
async def list_outbox(request: web.Request) -> web.Response:
    token = token_of(request)
    state_name = request.query.get("state") or None
    if state_name is not None and state_name not in {s.value for s in OutboxState}:
        allowed = ", ".join(s.value for s in OutboxState)
        raise validation_problem([{"field": "state", "message": f"one of: {allowed}"}])
    account_id = request.query.get("account_id") or None
    if account_id is not None:
        require(request, Action.READ, account_id)
    limit = int_query(request, "limit", 100, lo=1, hi=500) or 100
    state = OutboxState(state_name) if state_name else None
    entries = await outbox_of(request).list(state, account_id=account_id, limit=limit)
    visible = [e for e in entries if token.allows(Action.READ, e.account_id)]
    states = [s.value for s in OutboxState]
    return json_ok({"entries": [entry_json(e) for e in visible], "states": states})


@routes.patch(ONE)
async def change(request: web.Request) -> web.Response:
    body = await read_json(request, ChangeScheduled)
    if body.text is None and body.send_at is None:
        raise validation_problem([{"field": "", "message": "give text, send_at or both"}])
    entry = await _entry(request, Action.SEND)
    if outbound_of(request) is None:
        raise ApiProblem(503, "not_ready", "the bridge is still starting", hint="retry in a moment")
    send_at: datetime | None = body.send_at
    changed = await outbox_of(request).reschedule(
        entry, token_of(request).user_id, text=body.text, send_at=send_at
    )
    return json_ok(entry_json(changed))


@routes.delete(ONE)
async def cancel(request: web.Request) -> web.Response:
    entry = await _entry(request, Action.SEND)
    changed = await outbox_of(request).cancel(entry, actor=f"token:{token_of(request).id}")
    return json_ok(entry_json(changed))


@routes.post(ONE + "/retry")
async def retry(request: web.Request) -> web.Response:
    entry = await _entry(request, Action.ADMIN)
    changed = await outbox_of(request).retry(entry, actor=f"token:{token_of(request).id}")
    return json_ok(entry_json(changed))
