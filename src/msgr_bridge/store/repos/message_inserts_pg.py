"""A batch of messages and their event-log entries as ONE statement on PostgreSQL (one round trip).

The session path (``message_inserts.insert_batch`` plus ``EventLogRepo.append_many`` in a transaction)
takes seven round trips per batch: BEGIN, the messages, the account links, the implicit conversation rows,
the event log's advisory lock, the event log, COMMIT. Here the same work is one statement, run outside an
explicit transaction (a single statement is atomic on its own), whose data-modifying CTEs do in order:

1. ``batch``: the messages to insert (the first copy of each key) arrive as ONE JSON array, the messages'
   canonical JSON (pydantic writes it in one call: no parameter per value for SQLAlchemy and asyncpg to
   convert and type-check one by one, which was most of a batch's CPU in the bridge).
2. ``inserted``: ``INSERT .. ON CONFLICT (key) DO UPDATE .. RETURNING id, xmax = 0``, as the session path:
   an existing key returns its id, ``xmax = 0`` tells a new row. ``known``: messages this store stored
   lately (``RecentIds``, typically a second linked account's copy) come with their id and skip it.
3. ``linked``: one ``message_accounts`` row per (account, message) of the batch (``seen_by``, a second JSON
   array); ``ON CONFLICT DO NOTHING RETURNING`` tells a new link from a duplicate.
4. ``groups`` / ``directs``: the implicit conversation rows of newly linked messages
   (``ChannelRepo.ensure_for_messages``: the same rules, the same ``ON CONFLICT`` clauses).
5. ``locked``, ``logged``: the event log's advisory lock (``EventLogRepo``), taken once every message row is
   written and only when one is new, then one entry per new message, in batch order, whose payload is the
   message's canonical JSON as sent: the seqs are drawn under the lock in that order, and the lock is held
   until the statement commits, so commit order is seq order as on the session path.

Batches with an echo of our own send (a message with a transaction id) keep the session path: their
transaction-id lookups and the savepoint that resolves a race with the send's own record stay in one place
(``message_inserts._upsert_postgres``).

The statement text never changes, so asyncpg prepares it once per connection (SQLAlchemy's prepared
statement cache, keyed by the text) and each batch is one Bind/Execute.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncEngine

from ...errors import DatabaseError
from ...jsonutil import dumps
from ...schema import Message
from .event_log import EVENT_LOG_LOCK
from .message_inserts import outcomes_of
from .message_records import BatchResult, Key

__all__ = ["INGEST", "RecentIds", "fits", "insert_and_log"]

_KEY = "network, conversation_id, remote_id, part"

INGEST = f"""WITH batch AS MATERIALIZED (
    SELECT e.n, e.doc, r.*
    FROM json_array_elements($1::json) WITH ORDINALITY AS e(doc, n),
    json_to_record(e.doc) AS r(
        network text, conversation_id text, remote_id text, part integer, account_id text, kind text,
        sender json, text text, formatted text, format text, attachments json, reply_to text,
        thread_id text, mentions json, "timestamp" timestamptz)
),
inserted AS (
    INSERT INTO messages ({_KEY}, sender_id, sender_name, text, formatted, format, attachments, reply_to,
                          thread_id, mentions, sent_at, edit_version)
    SELECT {_KEY}, sender->>'user_id', sender->>'display_name', text, formatted, format,
           json_strip_nulls(attachments), reply_to, thread_id, json_strip_nulls(mentions), "timestamp", 0
    FROM batch ORDER BY n
    ON CONFLICT ({_KEY}) DO UPDATE SET part = excluded.part
    RETURNING id, {_KEY}, xmax = 0 AS created
),
known AS (
    SELECT (k->>0)::bigint AS id, k->>1 AS network, k->>2 AS conversation_id, k->>3 AS remote_id,
           (k->>4)::integer AS part
    FROM json_array_elements($3::json) AS k
),
stored AS (
    SELECT id, {_KEY} FROM inserted UNION ALL SELECT id, {_KEY} FROM known
),
seen_by AS MATERIALIZED (
    SELECT p->>0 AS account_id, p->>1 AS network, p->>2 AS conversation_id, p->>3 AS remote_id,
           (p->>4)::integer AS part, (p->>5)::boolean AS direct
    FROM json_array_elements($2::json) AS p
),
linked AS (
    INSERT INTO message_accounts (account_id, message_id)
    SELECT seen_by.account_id, stored.id FROM seen_by JOIN stored USING ({_KEY})
    ON CONFLICT DO NOTHING
    RETURNING account_id, message_id
),
listed AS (
    SELECT seen_by.account_id, seen_by.network, seen_by.conversation_id, bool_or(seen_by.direct) AS direct
    FROM linked
    JOIN stored ON stored.id = linked.message_id
    JOIN seen_by ON seen_by.account_id = linked.account_id
        AND (seen_by.network, seen_by.conversation_id, seen_by.remote_id, seen_by.part)
          = (stored.network, stored.conversation_id, stored.remote_id, stored.part)
    GROUP BY seen_by.account_id, seen_by.network, seen_by.conversation_id
),
groups AS (
    INSERT INTO bridge_channels (account_id, network, remote_id, type, updated_at)
    SELECT account_id, network, conversation_id, 'group', $6 FROM listed WHERE NOT direct
    ON CONFLICT DO NOTHING
),
directs AS (
    INSERT INTO bridge_channels AS c (account_id, network, remote_id, type, updated_at)
    SELECT account_id, network, conversation_id, 'direct', $6 FROM listed WHERE direct
    ON CONFLICT (account_id, remote_id) DO UPDATE SET type = excluded.type
    WHERE c.last_sync_at IS NULL AND c.type <> excluded.type
),
locked AS (
    SELECT pg_advisory_xact_lock($4) FROM inserted WHERE created HAVING count(*) > 0
),
logged AS (
    INSERT INTO event_log (tenant, account_id, conversation_id, kind, payload, created_at)
    SELECT $5, batch.account_id, batch.conversation_id, batch.kind, batch.doc, $6
    FROM batch JOIN inserted USING ({_KEY}) CROSS JOIN locked
    WHERE inserted.created
    ORDER BY batch.n
    RETURNING seq
)
SELECT ins.*, links.*, seqs.* FROM
    (SELECT array_agg(batch.n) AS n, array_agg(inserted.id) AS ids, array_agg(inserted.created) AS created
     FROM inserted JOIN batch USING ({_KEY})) AS ins,
    (SELECT array_agg(account_id) AS accounts, array_agg(message_id) AS messages FROM linked) AS links,
    (SELECT array_agg(seq) AS seqs FROM logged) AS seqs
"""
"""Parameters: $1 the JSON array of the messages to insert, $2 the (account, key, direct) arrays of the
batch's (account, message) pairs, $3 the (id, key) arrays of messages known to be stored (``RecentIds``),
$4 the event log's lock, $5 the tenant, $6 the time of the transaction. One row of arrays comes back
(arrays decode far cheaper than a row per value): the inserted messages' positions in $1, ids and whether
each is new; the new links' accounts and message ids; the new event-log entries' seqs."""


class RecentIds:
    """The ids of the messages lately stored, by key (a bounded LRU): a second linked account's copy of a
    group message, which typically arrives in the next batch, is linked to the row without the
    ``ON CONFLICT DO UPDATE`` that would otherwise find it, which writes a new version of the row and of
    its index entries (the full-text one included) just to learn its id. (A lookup by key would depend on
    the planner, see ``message_inserts._upsert_postgres``.) A batch that fails clears it: should an id be
    stale (its message deleted since), the retry finds the row, or its absence, through the statement."""

    def __init__(self, maxsize: int = 2048) -> None:
        self.maxsize = maxsize
        self._ids: OrderedDict[Key, int] = OrderedDict()

    def get(self, key: Key) -> int | None:
        found = self._ids.get(key)
        if found is not None:
            self._ids.move_to_end(key)
        return found

    def put(self, key: Key, message_id: int) -> None:
        self._ids[key] = message_id
        if len(self._ids) > self.maxsize:
            self._ids.popitem(last=False)

    def clear(self) -> None:
        self._ids.clear()

    def __len__(self) -> int:
        return len(self._ids)


@functools.cache
def _messages() -> TypeAdapter[list[Message]]:
    """The batch's JSON writer, built with the first PostgreSQL batch."""
    return TypeAdapter(list[Message])


def fits(messages: Sequence[Message]) -> bool:
    """Whether this statement can store the batch: no message is an echo of our own send (``txn_id``)."""
    return all(m.txn_id is None for m in messages)


async def insert_and_log(
    engine: AsyncEngine, tenant: str, messages: Sequence[Message], now: datetime, recent: RecentIds
) -> BatchResult:
    """Store ``messages`` and log the new ones (the same outcomes and entries as ``insert_batch`` plus
    ``append_many``, see the module docstring); one outcome per message, in input order. Raises what
    SQLAlchemy raises, or ``ValueError`` for text that cannot be written as JSON (a lone surrogate)."""
    first: dict[Key, int] = {}
    seen_by: dict[tuple[str, Key], list[Any]] = {}
    for index, m in enumerate(messages):
        key = (m.network, m.conversation_id, m.remote_id, m.part)
        first.setdefault(key, index)
        if (pair := (m.account_id, key)) not in seen_by:  # its first copy: a 1:1 chat?
            seen_by[pair] = [m.account_id, *key, m.sender.user_id == m.conversation_id]
    ids: dict[Key, int] = {}
    new: list[Key] = []
    known: list[list[Any]] = []
    for key in first:
        if (message_id := recent.get(key)) is None:
            new.append(key)
        else:
            ids[key] = message_id
            known.append([message_id, *key])
    docs = _messages().dump_json([messages[first[k]] for k in new]).decode()
    params = (docs, dumps(list(seen_by.values())), dumps(known), EVENT_LOG_LOCK, tenant, now)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (await conn.exec_driver_sql(INGEST, params)).one()
    except BaseException:
        recent.clear()
        raise
    positions, row_ids, news, accounts, linked_ids, seqs = (v or [] for v in row)
    created: set[Key] = set()
    for position, row_id, is_new in zip(positions, row_ids, news, strict=True):
        ids[key := new[position - 1]] = row_id
        recent.put(key, row_id)
        if is_new:
            created.add(key)
    if len(ids) != len(first) or len(seqs) != len(created):
        raise DatabaseError(
            f"storing {len(new)} messages returned {len(positions)} rows and {len(seqs)} log "
            f"entries for {len(created)} new ones",
            hint="a bug in message_inserts_pg.INGEST: please report it with this message",
        )
    linked = set(zip(accounts, linked_ids, strict=True))
    seqs.sort()  # drawn in batch order under the lock (``logged``): sorted, they are in that order
    return BatchResult(outcomes_of(messages, first, ids, created, linked), seqs)
