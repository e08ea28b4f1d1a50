"""A batch of messages and their event-log entries as ONE transaction on a SQLite writer's thread.

The same statements and the same answers as ``message_inserts.insert_batch`` plus ``EventLogRepo
.append_many`` (the constraints decide created / linked / duplicate, an echo of our own send is found by
its transaction id), compiled once (``store.compiled``) and run by ``Database.on_writer_thread``: one trip
to the database thread for the whole batch instead of one per statement. Everyday chat is one message per
transaction, where that trip count and SQLAlchemy's per-statement work were most of the cost
(bench/everyday.py, ``in_*``). A batch of messages is inserted a chunk per statement, not a row per
statement: each statement adds a segment to the full-text index (``CompiledRowsInsert``). PostgreSQL, and
batches with edits, reactions or receipts, take the session path (``inbound.persist``).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from ...errors import DatabaseError
from ...schema import Message
from ..compiled import CompiledRowsInsert, CompiledStatement
from ..models import BridgeChannel, EventLogRow, OutboxRow
from ._base import table
from .entities import ChannelRepo
from .event_log import LOG_COLUMNS
from .message_inserts import message_row, outcomes_of
from .message_records import LINKS, MESSAGES, BatchResult, InsertOutcome, Key, key_of

_MESSAGE_COLUMNS = tuple(c.key for c in MESSAGES.columns if c.key != "id")
_KEY = ("network", "conversation_id", "remote_id", "part")
_CHANNEL_COLUMNS = (
    "account_id",
    "network",
    "remote_id",
    "name",
    "type",
    "topic",
    "last_sync_at",
    "updated_at",
)


class MessageStatements:
    """The statements of one batch, compiled once for the database's dialect."""

    def __init__(self, dialect: Dialect) -> None:
        outbox, channels, log = table(OutboxRow), table(BridgeChannel), table(EventLogRow)
        m = MESSAGES

        def compiled(stmt: Any, keys: Sequence[str]) -> CompiledStatement:
            return CompiledStatement(stmt, dialect, keys)

        self.outbox_by_txn = compiled(select(outbox.c.id).where(outbox.c.txn_id == bindparam("t")), ["t"])
        self.insert = compiled(sqlite.insert(m).on_conflict_do_nothing(), _MESSAGE_COLUMNS)
        self.insert_rows = CompiledRowsInsert(
            sqlite.insert(m).on_conflict_do_nothing(),
            dialect,
            _MESSAGE_COLUMNS,
            [m.c.id, *(m.c[k] for k in _KEY)],
        )
        self.by_key = compiled(select(m.c.id).where(*(m.c[k] == bindparam(k) for k in _KEY)), _KEY)
        self.by_txn = compiled(select(m.c.id).where(m.c.txn_id == bindparam("t")), ["t"])
        self.link = compiled(sqlite.insert(LINKS).on_conflict_do_nothing(), ["account_id", "message_id"])
        self.group = compiled(ChannelRepo.implicit_group(sqlite.insert(channels)), _CHANNEL_COLUMNS)
        self.direct = compiled(ChannelRepo.implicit_direct(sqlite.insert(channels)), _CHANNEL_COLUMNS)
        self.log = compiled(log.insert(), LOG_COLUMNS)


def insert_and_log(
    st: MessageStatements,
    messages: Sequence[Message],
    log_rows: Callable[[list[InsertOutcome]], Sequence[Mapping[str, Any]]],
) -> Callable[[sqlite3.Connection], BatchResult]:
    """The transaction's work, for ``Database.on_writer_thread``: insert ``messages``, then append the
    event-log rows that ``log_rows`` makes from the outcomes (the caller decides what is logged)."""

    def work(conn: sqlite3.Connection) -> BatchResult:
        outcomes = _insert(conn, st, messages)
        seqs = [cast(int, st.log.insert(conn, row)) for row in log_rows(outcomes)]
        return BatchResult(outcomes, seqs)

    return work


@functools.cache
def statements(dialect: Dialect) -> MessageStatements:
    """The statements for a dialect, compiled on first use."""
    return MessageStatements(dialect)


def insert_batch_raw(
    conn: sqlite3.Connection,
    dialect: Dialect,
    messages: Sequence[Message],
    outbox_ids: Mapping[str, str] | None = None,
) -> list[InsertOutcome]:
    """``message_inserts.insert_batch_in`` on the writer thread's own ``sqlite3`` connection (in the
    transaction it is in): the same statements, compiled once."""
    return _insert(conn, statements(dialect), messages, outbox_ids)


def _insert(
    conn: sqlite3.Connection,
    st: MessageStatements,
    messages: Sequence[Message],
    known: Mapping[str, str] | None = None,
) -> list[InsertOutcome]:
    first: dict[Key, int] = {}
    for index, message in enumerate(messages):
        first.setdefault(key_of(message), index)
    unique = [messages[i] for i in first.values()]
    outbox_ids: dict[str, str] = dict(known or {})
    for txn in {m.txn_id for m in unique if m.txn_id} - (outbox_ids.keys() if known is not None else set()):
        if rows := st.outbox_by_txn.execute(conn, {"t": txn}):
            outbox_ids[txn] = rows[0][0]
    new_rows = [message_row(m, outbox_ids.get(m.txn_id) if m.txn_id else None) for m in unique]
    ids: dict[Key, int] = {}
    if len(new_rows) == 1:  # one row (everyday chat): its id without RETURNING, which costs more
        if (inserted := st.insert.insert(conn, new_rows[0])) is not None:
            ids[key_of(unique[0])] = inserted
    else:  # one statement per chunk, not per row: see CompiledRowsInsert (one full-text segment each)
        for row_id, *columns in st.insert_rows.execute(conn, new_rows):
            if (k := cast(Key, tuple(columns))) not in first:
                raise DatabaseError(
                    f"the insert returned {k!r}, not a key of the batch",
                    hint="the batch was rolled back; this is a bug, please report it",
                )
            ids[k] = row_id
    created = set(ids)
    for m in unique:
        k = key_of(m)
        if k in created:
            continue
        # Skipped: a duplicate by key, or the echo of our send already stored under its own key (txn id).
        found = st.by_key.execute(conn, dict(zip(_KEY, k, strict=True)))
        if not found and m.txn_id:
            found = st.by_txn.execute(conn, {"t": m.txn_id})
        if not found:
            raise DatabaseError(
                f"message {k!r} was neither inserted nor found",
                hint="a concurrent delete removed it; the batch was rolled back and can be retried",
            )
        ids[k] = found[0][0]
    linked: set[tuple[str, int]] = set()
    for account_id, message_id in dict.fromkeys((m.account_id, ids[key_of(m)]) for m in messages):
        if st.link.insert(conn, {"account_id": account_id, "message_id": message_id}) is not None:
            linked.add((account_id, message_id))
    outcomes = outcomes_of(messages, first, ids, created, linked)
    groups, directs = ChannelRepo.implicit_rows(
        [m for m, o in zip(messages, outcomes, strict=True) if o.linked_account]
    )
    for group in groups:
        st.group.execute(conn, group)
    for direct in directs:
        st.direct.execute(conn, direct)
    return outcomes
