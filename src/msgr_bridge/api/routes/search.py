"""``GET /v1/search``: full-text search over every message of every account the token may read.

Query parameters: ``q`` (required, at most 256 characters; plain words, ``"a phrase"``, ``prefix*``: see
``store/search_terms.py``), and the optional filters ``account``, ``network``, ``conversation``, ``sender``
(a sender's user id), ``since`` and ``until`` (RFC 3339 with an offset; ``since`` inclusive, ``until``
exclusive, on the time the message was sent), ``limit`` (1..100, default 20) and ``cursor`` (the opaque
``next_cursor`` of the previous page).

The answer: ``{"results": [{"message": {...}, "snippet": "...", "highlights": [[start, end], ...],
"account_id": "...", "network": "..."}], "next_cursor": "..." | null}``, newest first. ``message`` is the
object history returns; ``snippet`` is plain text of at most 160 characters (plus ``…`` where cut) around
the first match, and ``highlights`` are ``[start, end)`` offsets into it in characters (Unicode code points);
``account_id`` is a readable account that saw the message (the first by id when several did). "Newest first"
is the order the bridge stored the messages (history's cursor order): the order sent, except history imported
later.

Scopes: without ``account``, the search covers the accounts the token may ``read`` (none readable: an empty
answer; no read scope at all: 403). With ``account``, that account only (404 when it does not exist, 403
without ``read`` on it). Errors: a query with no word, too long or with more than 16 terms is a 400
``invalid_query``; a missing ``q`` or a bad filter, limit or cursor is a 422 naming the parameter.
"""

from __future__ import annotations

import base64
from datetime import datetime

from aiohttp import web

from ...store.repos.accounts import AccountRecord
from ...store.repos.search import SearchFilters, SearchHit
from ...store.search_terms import Term, parse_query, snippet
from ...store.tokens import Action
from ..auth import require, token_of
from ..bodies import int_query
from ..common import accounts_of, json_ok, search_of
from ..openapi import op
from ..problems import ApiProblem, validation_problem
from ..queries import message_json

routes = web.RouteTableDef()
FILTERS = ("account", "network", "conversation", "sender", "since", "until")
DOCS = [
    op(
        "GET",
        "/v1/search",
        "Full-text search across every readable account, newest first, with snippets and highlights",
        scope="read",
        query=("q", *FILTERS, "limit", "cursor"),
    )
]
MAX_FILTER_CHARS = 1000
CURSOR_PREFIX = "s1:"


@routes.get("/v1/search")
async def search(request: web.Request) -> web.Response:
    q = request.query.get("q")
    if q is None or not q.strip():
        raise validation_problem([{"field": "q", "message": "is required: the words to search for"}])
    terms = parse_query(q)
    limit = int_query(request, "limit", 20, lo=1, hi=100) or 20
    records = {r.id: r for r in await accounts_of(request).list()}
    filters = _filters(request, records)
    hits = await search_of(request).search(
        terms, filters, limit=limit + 1, self_ids={a: records[a].remote_user_id for a in filters.accounts}
    )
    more = len(hits) > limit
    hits = hits[:limit]
    next_cursor = _encode_cursor(hits[-1].message.id) if more else None
    return json_ok({"results": [_result(h, terms) for h in hits], "next_cursor": next_cursor})


def _result(hit: SearchHit, terms: tuple[Term, ...]) -> dict[str, object]:
    found = snippet(hit.message.text, terms)
    return {
        "message": message_json(hit.message),
        "snippet": found.text,
        "highlights": [list(span) for span in found.highlights],
        "account_id": hit.account_id,
        "network": hit.message.network,
    }


def _filters(request: web.Request, records: dict[str, AccountRecord]) -> SearchFilters:
    values: dict[str, str | None] = {}
    for name in FILTERS:
        value = request.query.get(name) or None
        if value is not None and len(value) > MAX_FILTER_CHARS:
            raise validation_problem([{"field": name, "message": f"at most {MAX_FILTER_CHARS} characters"}])
        if value is not None and "\x00" in value:
            raise validation_problem([{"field": name, "message": "must not contain a NUL character"}])
        values[name] = value
    since, until = _time(values["since"], "since"), _time(values["until"], "until")
    if since is not None and until is not None and since >= until:
        raise validation_problem([{"field": "until", "message": "must be later than since"}])
    token = token_of(request)
    if (account := values["account"]) is not None:
        if account not in records:
            raise ApiProblem(
                404,
                "account_not_found",
                f"no account {account!r}",
                hint="list your accounts with GET /v1/accounts",
            )
        require(request, Action.READ, account)
        accounts: tuple[str, ...] = (account,)
    else:
        if not any(s.action in (Action.READ, Action.ADMIN) for s in token.scopes):
            require(request, Action.READ)  # a 403 naming read:*
        accounts = tuple(a for a in sorted(records) if token.allows(Action.READ, a))
    network = values["network"]
    if network is not None:
        accounts = tuple(a for a in accounts if records[a].network == network)
    return SearchFilters(
        accounts=accounts,
        networks=(network,) if network else tuple(sorted({records[a].network for a in accounts})),
        conversation_id=values["conversation"],
        sender_id=values["sender"],
        since=since,
        until=until,
        before_id=_decode_cursor(request.query.get("cursor")),
    )


def _time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise validation_problem(
            [{"field": field, "message": f"not an RFC 3339 time with an offset: {value[:64]!r}"}],
        )
    return parsed


def _encode_cursor(message_id: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{message_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        number = raw.removeprefix(CURSOR_PREFIX)
        if raw.startswith(CURSOR_PREFIX) and number.isascii() and number.isdigit() and len(number) <= 18:
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise validation_problem([{"field": "cursor", "message": "not a cursor from a search's next_cursor"}])
