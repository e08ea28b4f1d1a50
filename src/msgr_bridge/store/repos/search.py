"""Full-text search over stored messages (the index of migration ``0006_search_index``), newest first.

``SearchRepo.search(terms, filters, limit)`` returns up to ``limit`` messages that match every term, newest
first by id (the id only grows, so it is also the page cursor: the next page is ``before_id=hits[-1].id``),
each with one of the given accounts that saw it. Only messages linked (``message_accounts``) to one of
``filters.accounts`` are returned: the caller passes the accounts its reader may see, never an empty list.
Deleted messages are never found (their text is cleared, and they are filtered out besides).

* SQLite: the FTS5 table gives the matching rowids in descending order and the scan stops at ``limit``;
  with a conversation filter the conversation's messages are walked instead (newest first, through
  ``ix_messages_conversation_cursor``), each checked against the index by rowid.
* PostgreSQL: ``search_vector @@ query`` through the GIN index, or along the id order when the planner
  finds that cheaper (a common word); the query is built with ``phraseto_tsquery`` and ``to_tsquery`` from
  bound parameters only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter

from ..models import MessageAccount, MessageRow
from ..search_terms import SearchQueryError, Term, fts5_query
from ..types import UTCDateTime
from ._base import Repository
from .message_records import StoredMessage, stored


@dataclass(frozen=True, slots=True)
class SearchFilters:
    accounts: tuple[str, ...]
    """The accounts whose messages may be returned (the reader's readable accounts, or the one asked for)."""
    network: str | None = None
    conversation_id: str | None = None
    sender_id: str | None = None
    since: datetime | None = None
    """Sent at or after."""
    until: datetime | None = None
    """Sent before."""
    before_id: int | None = None
    """The page cursor: only messages with a smaller id."""


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
            is_sqlite = s.get_bind().dialect.name == "sqlite"
            sql, params = (_sqlite if is_sqlite else _postgres)(tuple(terms), filters, limit)
            binds: list[BindParameter[Any]] = [bindparam("accounts", expanding=True)]
            binds += [bindparam(k, type_=UTCDateTime()) for k in ("since", "until") if k in params]
            stmt = text(sql).bindparams(*binds)
            try:
                ids = list((await s.execute(stmt, params)).scalars().all())
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


def _filters(f: SearchFilters, params: dict[str, Any]) -> list[str]:
    where = [
        "m.deleted_at IS NULL",
        "EXISTS (SELECT 1 FROM message_accounts ma WHERE ma.message_id = m.id"
        " AND ma.account_id IN :accounts)",
    ]
    params["accounts"] = list(f.accounts)
    for column, key, value in (
        ("m.network", "network", f.network),
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
    return where


def _sqlite(terms: tuple[Term, ...], f: SearchFilters, limit: int) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"q": fts5_query(terms), "limit": limit}
    where = _filters(f, params)
    if f.conversation_id is not None:
        # One conversation: walk its messages newest first and probe the index by rowid for each.
        where.append("EXISTS (SELECT 1 FROM messages_fts WHERE messages_fts MATCH :q AND rowid = m.id)")
        sql = "SELECT m.id FROM messages m WHERE " + " AND ".join(where)
        return sql + " ORDER BY m.id DESC LIMIT :limit", params
    # FTS5 yields matching rowids in descending order; CROSS JOIN keeps it the outer loop.
    sql = (
        "SELECT m.id FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid"
        " WHERE messages_fts MATCH :q AND " + " AND ".join(where)
    )
    return sql + " ORDER BY messages_fts.rowid DESC LIMIT :limit", params


def _postgres(terms: tuple[Term, ...], f: SearchFilters, limit: int) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    parts = []
    for i, term in enumerate(terms):
        if term.prefix:
            parts.append(f"to_tsquery('simple', :t{i})")
            params[f"t{i}"] = term.tsquery_prefix()
        else:
            parts.append(f"phraseto_tsquery('simple', :t{i})")
            params[f"t{i}"] = term.source
    where = [f"m.search_vector @@ ({' && '.join(parts)})", *_filters(f, params)]
    sql = "SELECT m.id FROM messages m WHERE " + " AND ".join(where)
    return sql + " ORDER BY m.id DESC LIMIT :limit", params
