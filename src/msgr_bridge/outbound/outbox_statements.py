"""The send path's outbox statements, on a synchronous connection: what ``OutboxOps`` runs in a session,
and what the send path runs whole in one ``Database.transact`` (on SQLite, one trip to the writer's
thread for a submit, a claim or a recorded send; issue 19). Statements are built once; values travel as
parameters."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, case, delete, func, select, update
from sqlalchemy.engine import Connection, Dialect

from ..store.compiled import CompiledStatement, PreparedQuery
from ..store.models import DeliveryAttempt, MessageRow, OutboxRow
from ..store.repos._base import dialect_insert, new_id, table
from ..store.repos.outbox import OutboxAction, OutboxEntry, OutboxState, get_in
from ..store.types import utcnow

if TYPE_CHECKING:
    from .requests import OutboundRequest

ATTEMPTS = table(DeliveryAttempt)
OUTBOX = table(OutboxRow)
_INSERT_OUTBOX = OUTBOX.insert()
_ATTEMPTS_SENT = PreparedQuery(
    update(ATTEMPTS)
    .where(ATTEMPTS.c.outbox_id.in_(bindparam("b_ids", expanding=True)), ATTEMPTS.c.finished_at.is_(None))
    .values(finished_at=bindparam("b_now", type_=ATTEMPTS.c.finished_at.type), outcome="sent", error=None)
)
_INTERRUPTED = PreparedQuery(
    select(ATTEMPTS.c.outbox_id)
    .where(ATTEMPTS.c.outbox_id.in_(bindparam("b_ids", expanding=True)), ATTEMPTS.c.outcome == "interrupted")
    .distinct()
)
_IN_FLIGHT = [OutboxState.SENDING.value, OutboxState.QUEUED.value]
_MARK_SENT_ONE = PreparedQuery(
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("b_id"), OUTBOX.c.state.in_(_IN_FLIGHT))
    .values(
        state=OutboxState.SENT.value,
        remote_id=bindparam("b_remote"),
        last_error=None,
        updated_at=bindparam("b_now", type_=OUTBOX.c.updated_at.type),
    )
    .returning(OUTBOX.c.id)
)
_BY_KEY = select(OUTBOX.c.id).where(
    OUTBOX.c.tenant == bindparam("b_tenant"), OUTBOX.c.idempotency_key == bindparam("b_key")
)


@functools.cache
def _compiled_insert(dialect: Dialect) -> CompiledStatement:
    return CompiledStatement(_INSERT_OUTBOX, dialect, _OUTBOX_COLUMNS)


_OUTBOX_COLUMNS = (
    "id", "tenant", "account_id", "conversation_id", "action", "payload", "idempotency_key", "txn_id",
    "state", "attempts", "next_attempt_at", "created_at", "updated_at",
)  # fmt: skip


def by_key_in(conn: Connection, tenant: str, idempotency_key: str) -> OutboxEntry | None:
    outbox_id = conn.execute(_BY_KEY, {"b_tenant": tenant, "b_key": idempotency_key}).scalar()
    return None if outbox_id is None else get_in(conn, outbox_id)


def create_many_in(
    conn: Connection,
    items: Sequence[tuple[OutboundRequest, Mapping[str, Any], str]],
    not_before: Callable[[OutboundRequest], datetime | None] | None = None,
) -> list[OutboxEntry | None]:
    """Insert (request, stored payload, txn_id) rows; per item the new entry, or None when its idempotency
    key is already taken (look the existing entry up with ``by_key_in``). ``not_before`` may put an
    entry's first attempt later (its conversation is on hold)."""
    now = utcnow()
    entries = [
        OutboxEntry(
            id=new_id("ob"),
            tenant=r.tenant,
            account_id=r.account_id,
            conversation_id=r.conversation_id,
            action=OutboxAction(r.action),
            payload=dict(payload),
            idempotency_key=r.idempotency_key,
            txn_id=txn_id,
            state=OutboxState.QUEUED if r.send_at is None else OutboxState.SCHEDULED,
            attempts=0,
            next_attempt_at=r.send_at or max(now, (not_before(r) if not_before else None) or now),
            last_error=None,
            remote_id=None,
            created_at=now,
            updated_at=now,
        )
        for r, payload, txn_id in items
    ]
    rows = [
        {
            "id": e.id,
            "tenant": e.tenant,
            "account_id": e.account_id,
            "conversation_id": e.conversation_id,
            "action": e.action.value,
            "payload": e.payload,
            "idempotency_key": e.idempotency_key,
            "txn_id": e.txn_id,
            "state": e.state.value,
            "attempts": 0,
            "next_attempt_at": e.next_attempt_at,
            "created_at": now,
            "updated_at": now,
        }
        for e in entries
    ]
    # Only a row with an idempotency key can conflict (ids are new): those go through ON CONFLICT DO
    # NOTHING RETURNING to learn which were taken; the rest is a plain executemany, the cheap path.
    keyed = [row for row in rows if row["idempotency_key"] is not None]
    plain = [row for row in rows if row["idempotency_key"] is None]
    inserted = {row["id"] for row in plain}
    raw = conn.connection.driver_connection
    if plain and isinstance(raw, sqlite3.Connection):  # SQLite's writer thread: compiled once
        insert = _compiled_insert(conn.dialect)
        for row in plain:
            insert.insert(raw, row)
    elif plain:  # one row (a lone send) as a plain execute, several as an executemany
        conn.execute(_INSERT_OUTBOX, plain[0] if len(plain) == 1 else plain)
    if keyed:
        stmt = dialect_insert(conn, OUTBOX).on_conflict_do_nothing().returning(OUTBOX.c.id)
        inserted.update(conn.execute(stmt, keyed).scalars().all())
    return [e if e.id in inserted else None for e in entries]


def mark_sent_many_in(conn: Connection, entries: Sequence[OutboxEntry]) -> list[OutboxEntry]:
    """``OutboxRepo.mark_sent`` for a whole batch in two statements (the remote ids travel as parameters);
    returns the entries that were in flight and are now ``sent``."""
    if not entries:
        return []
    now = utcnow()
    remote = {e.id: e.remote_id for e in entries}
    # One UPDATE ... RETURNING for the batch: each row's remote id by a CASE on its id (a lone send, the
    # everyday case, is the statement built once).
    if len(remote) == 1:
        ((only, remote_id),) = remote.items()
        done_ids = set(_MARK_SENT_ONE.scalars(conn, {"b_id": only, "b_remote": remote_id, "b_now": now}))
    else:
        stmt = (
            update(OUTBOX)
            .where(OUTBOX.c.id.in_(list(remote)), OUTBOX.c.state.in_(_IN_FLIGHT))
            .values(
                state=OutboxState.SENT.value,
                remote_id=case(remote, value=OUTBOX.c.id),
                last_error=None,
                updated_at=now,
            )
            .returning(OUTBOX.c.id)
        )
        done_ids = set(conn.scalars(stmt).all())
    done = [e for e in entries if e.id in done_ids]
    if done:
        _ATTEMPTS_SENT.rows(conn, {"b_ids": [e.id for e in done], "b_now": now})
    return done


def fail_new_in(conn: Connection, outbox_id: str, reason: str) -> None:
    """A just-created entry refused by policy: ``failed`` with the reason, no attempt made."""
    waiting = [OutboxState.QUEUED.value, OutboxState.SCHEDULED.value]
    conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == outbox_id, OUTBOX.c.state.in_(waiting))
        .values(state=OutboxState.FAILED.value, last_error=reason, updated_at=utcnow())
    )


def release_many_in(
    conn: Connection,
    ids: Sequence[str],
    until: datetime,
    *,
    outcome: str | None = None,
    error: str | None = None,
) -> None:
    """Back to ``queued`` until ``until`` without using up an attempt. With ``outcome`` the open attempt
    rows are closed with it (the platform was called: ``rate_limited``, ``not_connected``); without, they
    are removed (nothing was tried)."""
    if not ids:
        return
    now = utcnow()
    wanted = list(ids)
    fewer = OUTBOX.c.attempts - 1
    conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(wanted), OUTBOX.c.state == OutboxState.SENDING.value)
        .values(
            state=OutboxState.QUEUED.value,
            next_attempt_at=until,
            attempts=func.max(fewer, 0) if conn.dialect.name == "sqlite" else func.greatest(fewer, 0),
            updated_at=now,
        )
    )
    open_attempt = (ATTEMPTS.c.outbox_id.in_(wanted), ATTEMPTS.c.finished_at.is_(None))
    if outcome is None:
        conn.execute(delete(ATTEMPTS).where(*open_attempt))
    else:
        conn.execute(
            update(ATTEMPTS).where(*open_attempt).values(finished_at=now, outcome=outcome, error=error)
        )


def interrupted_in(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Which of these entries have an attempt that was found in flight after a crash."""
    if not ids:
        return set()
    return set(_INTERRUPTED.scalars(conn, {"b_ids": list(ids)}))


def echoes_in(conn: Connection, txn_ids: Iterable[str]) -> dict[str, str]:
    """txn_id -> remote id of messages already stored with one of these transaction ids (echoes)."""
    wanted = list(txn_ids)
    if not wanted:
        return {}
    stmt = select(MessageRow.txn_id, MessageRow.remote_id).where(MessageRow.txn_id.in_(wanted))
    return {t: r for t, r in conn.execute(stmt).all() if t is not None}


def blocked_in(conn: Connection, claimed: Sequence[OutboxEntry]) -> dict[str, datetime]:
    """Claimed entries that must wait because an OLDER entry of the same conversation is still queued
    (waiting for a retry) or in flight elsewhere: entry id -> when to look again."""
    if not claimed:
        return {}
    oldest: dict[tuple[str, str], tuple[datetime, str, datetime]] = {}
    for row in _BLOCKERS_QUERY.rows(conn, _blockers_params(claimed)):
        k = (row.account_id, row.conversation_id)
        cand = (row.created_at, row.id, row.next_attempt_at)
        if k not in oldest or cand[:2] < oldest[k][:2]:
            oldest[k] = cand
    out: dict[str, datetime] = {}
    for e in claimed:
        block = oldest.get((e.account_id, e.conversation_id))
        if block is not None and (block[0], block[1]) < (e.created_at, e.id):
            out[e.id] = max(block[2], utcnow() + timedelta(seconds=0.1))
    return out


_BLOCKERS = select(
    OUTBOX.c.id, OUTBOX.c.account_id, OUTBOX.c.conversation_id, OUTBOX.c.created_at, OUTBOX.c.next_attempt_at
).where(
    OUTBOX.c.account_id.in_(bindparam("b_accounts", expanding=True)),
    OUTBOX.c.conversation_id.in_(bindparam("b_conversations", expanding=True)),
    OUTBOX.c.state.in_([OutboxState.QUEUED.value, OutboxState.SENDING.value]),
    OUTBOX.c.created_at <= bindparam("b_newest", type_=OUTBOX.c.created_at.type),
    OUTBOX.c.id.not_in(bindparam("b_ids", expanding=True)),
)
_BLOCKERS_QUERY = PreparedQuery(_BLOCKERS)


def _blockers_params(claimed: Sequence[OutboxEntry]) -> dict[str, Any]:
    return {
        "b_accounts": sorted({e.account_id for e in claimed}),
        "b_conversations": sorted({e.conversation_id for e in claimed}),
        "b_newest": max(e.created_at for e in claimed),
        "b_ids": [e.id for e in claimed],
    }


def blockers_query(claimed: Sequence[OutboxEntry]) -> Select[str, str, str, datetime, datetime]:
    """Queued or in-flight entries of the claimed entries' conversations, not newer than the newest claimed
    one (what ``blocked_in`` looks at, with its parameters bound; ix_outbox_conversation_state answers it
    without reading the conversations' sent history)."""
    return _BLOCKERS.params(_blockers_params(claimed))
