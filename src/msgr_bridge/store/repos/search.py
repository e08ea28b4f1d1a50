"""Full-text search over stored messages (the index of migration ``0008_search_index``), newest first.

``SearchRepo.search(terms, filters, limit)`` returns up to ``limit`` messages that match every term, newest
first by id (the id only grows, so it is also the page cursor: the next page is ``before_id=hits[-1].id``),
each with one of the given accounts that saw it. Only messages linked (``message_accounts``) to one of
``filters.accounts`` are returned: the caller passes the accounts its reader may see, never an empty list.
Deleted messages are never found (their text is cleared, and they are filtered out besides).

* SQLite: the FTS5 table gives the matching rowids in descending order and the scan stops at ``limit``;
  with a conversation filter the conversation's messages are walked instead (newest first, through
  ``ix_messages_conversation_cursor``), checked against the match set (read once when it is small) or
  against the index by rowid (when the words are common).
* PostgreSQL: ``search_vector @@ query``, built with ``phraseto_tsquery`` and ``to_tsquery`` from bound
  parameters only. From the planner's estimates, either every match is read through the GIN index and
  sorted (rare words), or the id order (or a conversation's or sender's index) is walked until the page is
  full (common words).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter, TextClause

from ..models import MessageAccount, MessageRow
from ..search_terms import SearchQueryError, Term, fts5_query
from ..types import UTCDateTime
from ._base import Repository
from .message_records import StoredMessage, stored

COMMON_MATCHES = 10_000
"""SQLite: a query matching at least this many messages is "common": with a conversation or sender filter,
its messages are checked one by one rather than against every match read at once (see ``_sqlite``)."""
WINDOW_MAX = 200_000
"""A date window of more messages than this is not turned into id bounds (see ``_date_window``)."""
FENCE_COST = 50.0
"""PostgreSQL: reading one match through the GIN index (a heap fetch, its scope check, the sort) costs
about this many rows walked in id order (measured by ``bench/search.py``; see ``_postgres``)."""
TABLE_ROWS_TTL_S = 60.0
_TABLE_ROWS: dict[str, tuple[float, float]] = {}
PHRASE_RARITY = 10.0
"""PostgreSQL: how many times fewer messages hold a phrase than hold all of its words (a guess)."""


@dataclass(frozen=True, slots=True)
class SearchFilters:
    accounts: tuple[str, ...]
    """The accounts whose messages may be returned (the reader's readable accounts, or the one asked for)."""
    networks: tuple[str, ...] = ()
    """Only these networks (empty: any). A conversation filter uses the conversation index only when its
    network is known: pass the networks of ``accounts``."""
    conversation_id: str | None = None
    sender_id: str | None = None
    since: datetime | None = None
    """Sent at or after."""
    until: datetime | None = None
    """Sent before."""
    before_id: int | None = None
    """The page cursor: only messages with a smaller id."""
    min_id: int | None = None
    """Only messages with this id or a larger one (set from a date window, see ``_date_window``)."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    message: StoredMessage
    account_id: str
    """One of ``filters.accounts`` that saw the message (the first by id when several did)."""


class SearchRepo(Repository):
    async def search(
        self,
        terms: Sequence[Term],
        filters: SearchFilters,
        *,
        limit: int = 20,
        self_ids: Mapping[str, str] | None = None,
        session: AsyncSession | None = None,
    ) -> list[SearchHit]:
        """Matches, newest first. ``self_ids`` maps an account id to its ``remote_user_id`` (marks what that
        account sent as ``sender.is_self``, as history does)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if not filters.accounts or not terms:
            return []
        async with self._read(session) as s:
            try:
                ids = await _matching_ids(s, tuple(terms), filters, limit)
            except OperationalError as exc:  # never expected: the query is built from bare words
                if "fts5" in str(exc.orig):
                    raise SearchQueryError(
                        "the search index refused the query", hint="search for plain words"
                    ) from None
                raise
            if not ids:
                return []
            rows = {r.id: r for r in (await s.scalars(select(MessageRow).where(MessageRow.id.in_(ids))))}
            links = select(MessageAccount.message_id, MessageAccount.account_id).where(
                MessageAccount.message_id.in_(ids), MessageAccount.account_id.in_(filters.accounts)
            )
            seen: dict[int, str] = {}
            for message_id, account_id in (await s.execute(links)).all():
                if message_id not in seen or account_id < seen[message_id]:
                    seen[message_id] = account_id
        selves = self_ids or {}
        return [
            SearchHit(stored(rows[i], self_id=selves.get(seen[i])), seen[i])
            for i in ids
            if i in rows and i in seen
        ]


async def _matching_ids(
    s: AsyncSession, terms: tuple[Term, ...], filters: SearchFilters, limit: int
) -> list[int]:
    if filters.since is not None or filters.until is not None:
        window = await _date_window(s, filters)
        if window is None:
            return []
        filters = window
    if s.get_bind().dialect.name == "sqlite":
        sql, params = await _sqlite(s, terms, filters, limit)
    else:
        sql, params = await _postgres(s, terms, filters, limit)
    return list((await s.execute(_bound(sql, params), params)).scalars().all())


async def _date_window(s: AsyncSession, f: SearchFilters) -> SearchFilters | None:
    """``f`` with the ids of its date window as id bounds (None when the window holds no message).

    Ids grow with arrival, so a window's messages usually span a narrow id range, which both backends
    search directly (FTS5 and the primary key seek to it) instead of walking every newer message. The
    bounds are exact (the min and max id of the window, through ``ix_messages_sent_at``); a window of more
    than ``WINDOW_MAX`` messages is not bounded (it is not selective).
    """
    params: dict[str, Any] = {"cap": WINDOW_MAX + 1}
    where = []
    if f.since is not None:
        where.append("sent_at >= :since")
        params["since"] = f.since
    if f.until is not None:
        where.append("sent_at < :until")
        params["until"] = f.until
    sql = (
        "SELECT min(id) AS lo, max(id) AS hi, count(*) AS n FROM"
        f" (SELECT id FROM messages WHERE {' AND '.join(where)} LIMIT :cap) AS w"
    )
    row = (await s.execute(_bound(sql, params), params)).one()
    if row.n == 0:
        return None
    if row.n > WINDOW_MAX:
        return f
    before = row.hi + 1 if f.before_id is None else min(f.before_id, row.hi + 1)
    return replace(f, min_id=row.lo, before_id=before)


def _bound(sql: str, params: dict[str, Any]) -> TextClause:
    """``sql`` with its list and timestamp parameters typed."""
    binds: list[BindParameter[Any]] = []
    binds += [bindparam(k, expanding=True) for k in ("accounts", "networks") if f":{k}" in sql]
    binds += [bindparam(k, type_=UTCDateTime()) for k in ("since", "until") if f":{k}" in sql]
    return text(sql).bindparams(*binds)


def _filters(f: SearchFilters, params: dict[str, Any]) -> list[str]:
    where = [
        "m.deleted_at IS NULL",
        "EXISTS (SELECT 1 FROM message_accounts ma WHERE ma.message_id = m.id"
        " AND ma.account_id IN :accounts)",
    ]
    params["accounts"] = list(f.accounts)
    if f.networks:
        where.append("m.network IN :networks")
        params["networks"] = list(f.networks)
    for column, key, value in (
        ("m.conversation_id", "conversation", f.conversation_id),
        ("m.sender_id", "sender", f.sender_id),
    ):
        if value is not None:
            where.append(f"{column} = :{key}")
            params[key] = value
    if f.since is not None:
        where.append("m.sent_at >= :since")
        params["since"] = f.since
    if f.until is not None:
        where.append("m.sent_at < :until")
        params["until"] = f.until
    if f.before_id is not None:
        where.append("m.id < :before")
        params["before"] = f.before_id
    if f.min_id is not None:
        where.append("m.id >= :min_id")
        params["min_id"] = f.min_id
    return where


async def _sqlite(
    s: AsyncSession, terms: tuple[Term, ...], f: SearchFilters, limit: int
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"q": fts5_query(terms), "limit": limit}
    where = _filters(f, params)
    if f.conversation_id is not None or f.sender_id is not None:
        # One conversation or sender: walk its messages newest first (the conversation index, or
        # ix_messages_sender). A match set under COMMON_MATCHES is read once into a temporary index; a
        # larger one (common words, which many of its messages hold) is probed by rowid for each message
        # until the page is full.
        counted = text(
            "SELECT count(*) FROM (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :q LIMIT :cap)"
        )
        matches = await s.scalar(counted, {"q": params["q"], "cap": COMMON_MATCHES})
        # A prefix is many words and a phrase is checked word by word at every position: a probe by rowid
        # would read each word's list again for every message, so they are never probed.
        if (matches or 0) < COMMON_MATCHES or any(t.prefix or len(t.words) > 1 for t in terms):
            where.append("m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :q)")
        else:
            where.append("EXISTS (SELECT 1 FROM messages_fts WHERE messages_fts MATCH :q AND rowid = m.id)")
        sql = "SELECT m.id FROM messages m WHERE " + " AND ".join(where)
        return sql + " ORDER BY m.id DESC LIMIT :limit", params
    # FTS5 yields matching rowids in descending order; CROSS JOIN keeps it the outer loop.
    # The id bounds are put on the FTS5 rowid too, so the index seeks to them.
    where += ["messages_fts.rowid < :before"] if "before" in params else []
    where += ["messages_fts.rowid >= :min_id"] if "min_id" in params else []
    sql = (
        "SELECT m.id FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid"
        " WHERE messages_fts MATCH :q AND " + " AND ".join(where)
    )
    return sql + " ORDER BY messages_fts.rowid DESC LIMIT :limit", params


def _plan_rows(plan: Any) -> float:
    """The estimated rows of an ``EXPLAIN (FORMAT JSON)`` answer (0 when it cannot be read)."""
    try:
        doc = json.loads(plan) if isinstance(plan, str | bytes) else plan
        return float(doc[0]["Plan"]["Plan Rows"])
    except (ValueError, TypeError, KeyError, IndexError):
        return 0.0


async def _postgres(
    s: AsyncSession, terms: tuple[Term, ...], f: SearchFilters, limit: int
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    parts = []
    for i, term in enumerate(terms):
        if term.prefix:
            parts.append(f"to_tsquery('simple', :t{i})")
            params[f"t{i}"] = term.tsquery_prefix()
        else:
            parts.append(f"phraseto_tsquery('simple', :t{i})")
            params[f"t{i}"] = term.source
    match = f"m.search_vector @@ ({' && '.join(parts)})"
    # The statement is prepared (asyncpg): after a few runs PostgreSQL may switch to a generic plan, blind
    # to the words. Plan each search for its words.
    await s.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    where = " AND ".join([match, *_filters(f, params)])
    # Two ways to a page, priced from the planner's estimates (counting would cost as much as searching):
    # walk the messages newest first checking each, about limit * table / matching rows read; or read
    # every message that has the words through the GIN index (a phrase is checked on each message that
    # has all its words) and sort the matches, about FENCE_COST per message read. The planner counts a
    # phrase's messages as those holding all its words: adjacent ones are far fewer.
    rarer = PHRASE_RARITY if any(len(t.words) > 1 for t in terms) else 1.0
    words = await _estimate(s, f"SELECT 1 FROM messages m WHERE {match}", params)
    matching = await _estimate(s, f"SELECT 1 FROM messages m WHERE {where}", params) / rarer
    table = await _table_rows(s)
    if limit * table / max(matching, 1.0) < FENCE_COST * words:
        # Walk the id order (or a conversation's, a sender's index) and stop at the page's end.
        return f"SELECT m.id FROM messages m WHERE {where} ORDER BY m.id DESC LIMIT :limit", params
    # Read the matches through the GIN index and sort. Without the fence the planner, betting on LIMIT,
    # walks the id order and can read the whole table for a rare word.
    sql = f"WITH hits AS MATERIALIZED (SELECT m.id FROM messages m WHERE {where})"
    return sql + " SELECT id FROM hits ORDER BY id DESC LIMIT :limit", params


async def _table_rows(s: AsyncSession) -> float:
    """The planner's count of messages, read at most every ``TABLE_ROWS_TTL_S`` per database."""
    key = str(s.get_bind().engine.url)
    cached = _TABLE_ROWS.get(key)
    if cached is not None and time.monotonic() - cached[0] < TABLE_ROWS_TTL_S:
        return cached[1]
    rows = await _estimate(s, "SELECT 1 FROM messages m", {})
    if len(_TABLE_ROWS) > 16:
        _TABLE_ROWS.clear()
    _TABLE_ROWS[key] = (time.monotonic(), rows)
    return rows


async def _estimate(s: AsyncSession, sql: str, params: dict[str, Any]) -> float:
    """The planner's estimate of the rows ``sql`` returns (one planning round trip, nothing executed)."""
    return _plan_rows(await s.scalar(_bound(f"EXPLAIN (FORMAT JSON) {sql}", params), params))
