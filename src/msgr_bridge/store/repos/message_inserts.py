"""The batch insert and dedupe path of ``MessageRepo.insert_batch``: messages, account links, echoes.

Kept apart from the reads because it is the one hot write path (every inbound batch goes through it) and
the one place where PostgreSQL and SQLite need different statements to learn the ids of duplicates.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, literal_column, or_, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import DatabaseError
from ...schema import Message
from ..models import MessageRow, OutboxRow
from ._base import chunks, in_session
from .entities import ChannelRepo
from .message_records import KEY_COLUMNS, LINKS, MESSAGES, InsertOutcome, Key, key_of
from .pg_bulk import arrays, unnest_insert

__all__ = ["insert_batch", "message_row", "outcomes_of"]


def message_row(message: Message, outbox_id: str | None) -> dict[str, Any]:
    """The ``messages`` row of a canonical message (``outbox_id``: our send it echoes, if any)."""
    return {
        "network": message.network,
        "conversation_id": message.conversation_id,
        "remote_id": message.remote_id,
        "part": message.part,
        "sender_id": message.sender.user_id,
        "sender_name": message.sender.display_name,
        "text": message.text,
        "formatted": message.formatted,
        "format": message.format.value,
        "attachments": [a.model_dump(mode="json", exclude_none=True) for a in message.attachments],
        "reply_to": message.reply_to,
        "thread_id": message.thread_id,
        "mentions": [m.model_dump(mode="json", exclude_none=True) for m in message.mentions],
        "sent_at": message.timestamp,
        "edited_at": None,
        "edit_version": 0,
        "deleted_at": None,
        "txn_id": message.txn_id,
        "outbox_id": outbox_id,
    }


async def insert_batch(session: AsyncSession, messages: Sequence[Message]) -> list[InsertOutcome]:
    """Store a batch in the caller's transaction; one outcome per input message, in input order
    (``insert_batch_in`` in the session's connection)."""
    if not messages:
        return []
    return await in_session(session, lambda conn: insert_batch_in(conn, messages))


def insert_batch_in(
    session: Connection, messages: Sequence[Message], outbox_ids: Mapping[str, str] | None = None
) -> list[InsertOutcome]:
    """Store a batch in the connection's transaction; one outcome per input message, in input order.

    A few statements whatever the batch size (plus a lookup of the ids of duplicates): a multi-row
    ``INSERT .. ON CONFLICT DO NOTHING RETURNING`` for the messages, the same for the account links,
    the outbox ids of messages that carry one of our transaction ids, and the conversation rows of newly
    linked messages (``ChannelRepo.ensure_for_messages``).
    """
    if not messages:
        return []
    raw = session.connection.driver_connection
    if isinstance(raw, sqlite3.Connection):  # on SQLite's writer thread: its statements compiled once
        from .message_inserts_thread import insert_batch_raw

        return insert_batch_raw(raw, session.dialect, messages, outbox_ids)
    first: dict[Key, int] = {}
    for index, message in enumerate(messages):
        first.setdefault(key_of(message), index)
    unique = [messages[i] for i in first.values()]
    if outbox_ids is None:  # our sends' own records know theirs (``outbound.recording``)
        outbox_ids = _outbox_ids(session, {m.txn_id for m in unique if m.txn_id})

    ids: dict[Key, int] = {}
    created: set[Key] = set()
    postgres = session.dialect.name == "postgresql"
    if postgres:
        _upsert_postgres(session, unique, outbox_ids, ids, created)
    else:
        rows = [message_row(m, outbox_ids.get(m.txn_id) if m.txn_id else None) for m in unique]
        for row in session.execute(_SQLITE_INSERT, rows).all():
            k = (row.network, row.conversation_id, row.remote_id, row.part)
            ids[k] = row.id
            created.add(k)
        _resolve_existing(session, [k for k in first if k not in ids], unique, ids)

    pairs = list(dict.fromkeys((m.account_id, ids[key_of(m)]) for m in messages))
    params: dict[str, Any] | list[dict[str, Any]]
    if postgres:
        link, params = _pg_link(), {"account_id": [a for a, _ in pairs], "message_id": [i for _, i in pairs]}
    else:
        link, params = _SQLITE_LINK, [{"account_id": a, "message_id": mid} for a, mid in pairs]
    linked = {(r.account_id, r.message_id) for r in session.execute(link, params).all()}

    outcomes = outcomes_of(messages, first, ids, created, linked)
    # A conversation known only through its messages (a 1:1 chat, a send to a new peer) is listed too.
    ChannelRepo.ensure_for_messages_in(
        session, [m for m, o in zip(messages, outcomes, strict=True) if o.linked_account]
    )
    return outcomes


def outcomes_of(
    messages: Sequence[Message],
    first: dict[Key, int],
    ids: dict[Key, int],
    created: set[Key],
    linked: set[tuple[str, int]],
) -> list[InsertOutcome]:
    """One outcome per message, in input order, from what the constraints let through: ``first`` is each
    key's first index in the batch, ``created`` the keys whose row is new, ``linked`` the new (account,
    message) links. Only a key's first copy counts as created, only a pair's first copy as linked."""
    outcomes: list[InsertOutcome] = []
    seen_pairs: set[tuple[str, int]] = set()
    for index, message in enumerate(messages):
        k = key_of(message)
        mid = ids[k]
        pair = (message.account_id, mid)
        created_here = k in created and first[k] == index
        outcomes.append(InsertOutcome(mid, created_here, pair in linked and pair not in seen_pairs))
        seen_pairs.add(pair)
    return outcomes


MESSAGE_COLUMNS = tuple(c.key for c in MESSAGES.columns if c.key != "id")
# Built once: building and keying a statement per batch cost more CPU than SQLite took to run it.
_SQLITE_INSERT = sqlite.insert(MESSAGES).on_conflict_do_nothing().returning(MESSAGES.c.id, *KEY_COLUMNS)
_SQLITE_LINK = sqlite.insert(LINKS).on_conflict_do_nothing().returning(LINKS.c.account_id, LINKS.c.message_id)


@functools.cache
def _pg_upsert() -> Any:
    """Messages on PostgreSQL: one array per column (``pg_bulk``); an existing key returns its id. Built
    on first use, as ``_pg_link``: a SQLite bridge never loads the PostgreSQL dialect."""
    insert = unnest_insert(MESSAGES, MESSAGE_COLUMNS)
    return insert.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS), set_={"part": insert.excluded.part}
    ).returning(MESSAGES.c.id, *KEY_COLUMNS, literal_column("xmax = 0").label("inserted"))


@functools.cache
def _pg_link() -> Any:
    return (
        unnest_insert(LINKS, ("account_id", "message_id"))
        .on_conflict_do_nothing()
        .returning(LINKS.c.account_id, LINKS.c.message_id)
    )


def _upsert_postgres(
    session: Connection,
    unique: Sequence[Message],
    outbox_ids: Mapping[str, str],
    ids: dict[Key, int],
    created: set[Key],
) -> None:
    """PostgreSQL: learn the ids of duplicates from the INSERT itself, never from a lookup by key.

    A lookup of skipped keys depends on the planner: on a table not yet analyzed it scans the whole
    conversation (through the cursor index), which made every batch of duplicates slower as the table
    grew. ``ON CONFLICT (key) DO UPDATE ... RETURNING id, xmax = 0`` goes through the unique index
    whatever the statistics say, and tells an insert (``xmax = 0``) from an existing row. Echoes whose
    transaction id is already stored under another key are resolved first, through the txn_id index.

    Two writers can store one transaction id under two keys at the same moment (our send recorded while
    the network's echo of it is stored): the second INSERT waits for the first and then violates the
    txn_id constraint, which ``ON CONFLICT (key)`` does not cover. A batch that carries transaction ids
    is therefore upserted under a savepoint, and on that violation the ids are looked up again (the first
    writer's row is visible once it committed) and the rest retried.
    """
    for attempt in range(1, TXN_RACE_ATTEMPTS + 1):
        _stored_echoes(session, unique, ids)
        rows = [
            message_row(m, outbox_ids.get(m.txn_id) if m.txn_id else None)
            for m in unique
            if key_of(m) not in ids
        ]
        if not rows:
            return
        if not any(row["txn_id"] for row in rows):
            _upsert(session, rows, ids, created)
            return
        try:
            with session.begin_nested():
                _upsert(session, rows, ids, created)
            return
        except IntegrityError as exc:
            if attempt == TXN_RACE_ATTEMPTS or _constraint(exc) != "uq_messages_txn_id":
                raise


TXN_RACE_ATTEMPTS = 3


def _stored_echoes(session: Connection, unique: Sequence[Message], ids: dict[Key, int]) -> None:
    with_txn = {m.txn_id: key_of(m) for m in unique if m.txn_id and key_of(m) not in ids}
    if not with_txn:
        return
    stmt = select(MessageRow.txn_id, MessageRow.id, *KEY_COLUMNS).where(MessageRow.txn_id.in_(list(with_txn)))
    for row in session.execute(stmt).all():
        k = with_txn[row.txn_id]
        if (row.network, row.conversation_id, row.remote_id, row.part) != k:
            ids[k] = row.id  # the echo of a send stored under its own key: not stored again


def _upsert(session: Connection, rows: list[dict[str, Any]], ids: dict[Key, int], created: set[Key]) -> None:
    for row in session.execute(_pg_upsert(), arrays(MESSAGES, MESSAGE_COLUMNS, rows)).all():
        k = (row.network, row.conversation_id, row.remote_id, row.part)
        ids[k] = row.id
        if row.inserted:
            created.add(k)


def _constraint(exc: BaseException) -> str | None:
    """The name of the constraint a driver error names (asyncpg's ``constraint_name``), through causes."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(name := getattr(seen, "constraint_name", None), str):
            return name
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


_OUTBOX_IDS = select(OutboxRow.__table__.c.txn_id, OutboxRow.__table__.c.id).where(
    OutboxRow.__table__.c.txn_id.in_(bindparam("txns", expanding=True))
)


def _outbox_ids(session: Connection, txn_ids: set[str | None]) -> dict[str, str]:
    wanted = [t for t in txn_ids if t]
    if not wanted:
        return {}
    return {txn: oid for txn, oid in session.execute(_OUTBOX_IDS, {"txns": wanted})}


def _resolve_existing(
    session: Connection, missing: list[Key], unique: Sequence[Message], ids: dict[Key, int]
) -> None:
    """Find the ids of rows that the INSERT skipped: duplicates by key, or by transaction id."""
    wanted = set(missing)
    for part in chunks(missing, 1):
        # One OR-ed condition per conversation, so both backends use the unique index's prefix.
        groups: dict[tuple[str, str], set[str]] = defaultdict(set)
        for network, conversation_id, remote_id, _part in part:
            groups[(network, conversation_id)].add(remote_id)
        condition = or_(
            *(
                and_(
                    MessageRow.network == network,
                    MessageRow.conversation_id == conversation_id,
                    MessageRow.remote_id.in_(sorted(remote_ids)),
                )
                for (network, conversation_id), remote_ids in groups.items()
            )
        )
        for row in session.execute(select(MessageRow.id, *KEY_COLUMNS).where(condition)).all():
            k = (row.network, row.conversation_id, row.remote_id, row.part)
            if k in wanted:
                ids[k] = row.id
    by_txn = {m.txn_id: key_of(m) for m in unique if m.txn_id and key_of(m) not in ids}
    if by_txn:
        stmt2 = select(MessageRow.txn_id, MessageRow.id).where(MessageRow.txn_id.in_(list(by_txn)))
        for txn, mid in session.execute(stmt2):
            if txn is not None:
                ids[by_txn[txn]] = mid
    if unresolved := [k for k in missing if k not in ids]:
        raise DatabaseError(
            f"{len(unresolved)} message(s) were neither inserted nor found, e.g. {unresolved[0]!r}",
            hint="a concurrent delete removed them; the batch was rolled back and can be retried",
        )
