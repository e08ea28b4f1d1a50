"""The outbox: every accepted outbound action, written first, with its delivery attempts.

Crash safety rests on two rules. ``create`` is idempotent per (tenant, idempotency key): a retried request
gets the existing entry. ``claim_due`` commits the move to ``sending`` and an open ``delivery_attempts`` row
*before* it returns, so before any connector is called there is a durable sent-marker. After a crash,
``recover_stuck_sending`` finds entries left in ``sending``, closes their attempt as ``interrupted`` and
queues them again with the same ``txn_id`` (networks that take transaction ids drop the duplicate; for the
others, the echo matcher finds the first copy by its ``txn_id`` before a resend).

States: queued -> sending -> sent -> delivered -> read; sending -> queued (retry) | failed | dead;
queued/failed/dead -> cancelled; failed/dead/cancelled -> queued (an operator's retry). A scheduled send
(``send_at``) is ``scheduled`` until its time (``next_attempt_at``), when the delivery worker queues it
(``outbound/scheduled.py``); until then it can be changed (``reschedule``) or cancelled.
"""

from __future__ import annotations

import builtins
import functools
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from ..compiled import PreparedQuery
from ..models import DeliveryAttempt, OutboxRow
from ..types import UTCDateTime, utcnow
from ._base import Repository, dialect_insert, in_session, new_id, table

OUTBOX = table(OutboxRow)
ATTEMPTS = table(DeliveryAttempt)
ON_WIRE = "on_wire"
"""The outcome of an open attempt whose send is being written to the network (committed before the write)."""


class OutboxAction(StrEnum):
    SEND = "send"
    EDIT = "edit"
    DELETE = "delete"
    REACT = "react"
    MARK_READ = "mark_read"


class OutboxState(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: str
    tenant: str
    account_id: str
    conversation_id: str
    action: OutboxAction
    payload: Mapping[str, Any]
    idempotency_key: str | None
    txn_id: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    remote_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: str | None


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        tenant=row.tenant,
        account_id=row.account_id,
        conversation_id=row.conversation_id,
        action=OutboxAction(row.action),
        payload=row.payload,
        idempotency_key=row.idempotency_key,
        txn_id=row.txn_id,
        state=OutboxState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        remote_id=row.remote_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


entry_from_row = _entry


def _order(entries: builtins.list[OutboxEntry]) -> builtins.list[OutboxEntry]:
    return sorted(entries, key=lambda e: (e.created_at, e.id))


# Statements of the delivery path, built once: building and keying a statement cost more CPU than SQLite
# took to run it (issue 19). Values travel as parameters.
_NOW = bindparam("b_now", type_=UTCDateTime())


def _claim_statement(due: Any) -> Any:
    return (
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(due))
        .values(state=OutboxState.SENDING.value, attempts=OUTBOX.c.attempts + 1, updated_at=_NOW)
        .returning(*OUTBOX.c)
    )


@functools.cache
def _claim_prebuilt(postgres: bool, by_account: bool) -> PreparedQuery:
    """``claim_due``'s UPDATE without exclusions (``due_query`` with parameters)."""
    due = (
        select(OUTBOX.c.id)
        .where(OUTBOX.c.state == OutboxState.QUEUED.value, OUTBOX.c.next_attempt_at <= _NOW)
        .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.created_at, OUTBOX.c.id)
        .limit(bindparam("b_limit"))
    )
    if by_account:
        due = due.where(OUTBOX.c.account_id == bindparam("b_account"))
    if postgres:
        due = due.with_for_update(skip_locked=True)
    return PreparedQuery(_claim_statement(due.scalar_subquery()))


# Attempt numbers continue after an operator's requeue (which resets the retry budget).
_OPEN_ATTEMPTS = PreparedQuery(
    ATTEMPTS.insert().from_select(
        ["outbox_id", "attempt", "started_at"],
        select(OUTBOX.c.id, func.coalesce(func.max(ATTEMPTS.c.attempt), 0) + 1, _NOW)
        .select_from(OUTBOX.outerjoin(ATTEMPTS, ATTEMPTS.c.outbox_id == OUTBOX.c.id))
        .where(OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)))
        .group_by(OUTBOX.c.id),
    )
)
_ON_WIRE = PreparedQuery(
    update(ATTEMPTS)
    .where(ATTEMPTS.c.outbox_id.in_(bindparam("b_ids", expanding=True)), ATTEMPTS.c.finished_at.is_(None))
    .values(outcome=ON_WIRE)
)


class OutboxRepo(Repository):
    async def create(
        self,
        tenant: str,
        account_id: str,
        conversation_id: str,
        action: OutboxAction,
        payload: Mapping[str, Any],
        idempotency_key: str | None = None,
        *,
        txn_id: str | None = None,
        not_before: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> tuple[OutboxEntry, bool]:
        """Accept an outbound action; ``(entry, True)`` when new, ``(existing entry, False)`` when the
        idempotency key (or transaction id) is already known. The caller compares the existing entry's
        request with its own when it must refuse a key reused for a different request."""
        now = utcnow()
        values = {
            "id": new_id("ob"),
            "tenant": tenant,
            "account_id": account_id,
            "conversation_id": conversation_id,
            "action": OutboxAction(action).value,
            "payload": dict(payload),
            "idempotency_key": idempotency_key,
            "txn_id": txn_id or f"mb-{uuid.uuid4().hex}",
            "state": OutboxState.QUEUED.value,
            "attempts": 0,
            "next_attempt_at": not_before or now,
            "created_at": now,
            "updated_at": now,
        }
        async with self._tx(session) as s:
            stmt = dialect_insert(s, OUTBOX).values(**values).on_conflict_do_nothing().returning(*OUTBOX.c)
            row = (await s.execute(stmt)).first()
            if row is not None:
                return _entry(row), True
            lookup = select(*OUTBOX.c)
            if idempotency_key is not None:
                lookup = lookup.where(OUTBOX.c.tenant == tenant, OUTBOX.c.idempotency_key == idempotency_key)
            else:
                lookup = lookup.where(OUTBOX.c.txn_id == values["txn_id"])
            return _entry((await s.execute(lookup)).one()), False

    async def get(self, outbox_id: str, *, session: AsyncSession | None = None) -> OutboxEntry | None:
        async with self._read(session) as s:
            row = (await s.execute(select(*OUTBOX.c).where(OUTBOX.c.id == outbox_id))).first()
            return _entry(row) if row is not None else None

    async def get_by_txn(self, txn_id: str, *, session: AsyncSession | None = None) -> OutboxEntry | None:
        async with self._read(session) as s:
            row = (await s.execute(select(*OUTBOX.c).where(OUTBOX.c.txn_id == txn_id))).first()
            return _entry(row) if row is not None else None

    def due_query(
        self,
        now: datetime,
        limit: int,
        *,
        account_id: str | None = None,
        exclude: Collection[tuple[str, str]] = (),
    ) -> Select[str]:
        """The ids of the ``limit`` earliest due, queued entries, oldest first among those due at the same
        time (fresh entries are due when created, so they go in creation order). ix_outbox_due answers it
        in index order, reading only due rows and stopping at the limit (migration 0003). ``exclude``
        leaves out (account_id, conversation_id) pairs a worker is busy delivering."""
        due = (
            select(OUTBOX.c.id)
            .where(OUTBOX.c.state == OutboxState.QUEUED.value, OUTBOX.c.next_attempt_at <= now)
            .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.created_at, OUTBOX.c.id)
            .limit(limit)
        )
        if account_id is not None:
            due = due.where(OUTBOX.c.account_id == account_id)
        if exclude:
            due = due.where(tuple_(OUTBOX.c.account_id, OUTBOX.c.conversation_id).not_in(list(exclude)))
        if not self.db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        return due

    async def claim_due(
        self,
        now: datetime | None = None,
        limit: int = 100,
        *,
        account_id: str | None = None,
        exclude: Collection[tuple[str, str]] = (),
        session: AsyncSession | None = None,
    ) -> builtins.list[OutboxEntry]:
        """Move up to ``limit`` due, queued entries to ``sending`` and open an attempt row for each, in its
        own committed transaction (the sent-marker is durable when this returns), or in ``session``'s (then
        it is durable when the caller commits, before it calls any connector). The earliest due
        (``due_query``), returned oldest first. On PostgreSQL, concurrent claimers skip each other's rows
        (``FOR UPDATE SKIP LOCKED``)."""
        when = now or utcnow()
        return await self._transact(
            session,
            lambda conn: self.claim_due_in(conn, when, limit, account_id=account_id, exclude=exclude),
        )

    def claim_due_in(
        self,
        conn: Connection,
        now: datetime,
        limit: int,
        *,
        account_id: str | None = None,
        exclude: Collection[tuple[str, str]] = (),
    ) -> builtins.list[OutboxEntry]:
        """``claim_due`` in ``conn``'s transaction (``Database.transact``)."""
        params: dict[str, Any] = {"b_now": now, "b_limit": limit}
        rows: Sequence[Any]
        if exclude:  # a worker busy with some conversations: built for the occasion
            due = self.due_query(now, limit, account_id=account_id, exclude=exclude)
            rows = conn.execute(_claim_statement(due.scalar_subquery()), params).all()
        else:  # the everyday claim: a statement built once
            if account_id is not None:
                params["b_account"] = account_id
            rows = _claim_prebuilt(not self.db.is_sqlite, account_id is not None).rows(conn, params)
        claimed = [_entry(row) for row in rows]
        if claimed:
            _OPEN_ATTEMPTS.rows(conn, {"b_ids": [e.id for e in claimed], "b_now": now})
        return _order(claimed)

    async def _finish(
        self,
        s: AsyncSession,
        outbox_id: str,
        from_states: tuple[OutboxState, ...],
        values: dict[str, Any],
        outcome: str | None,
        error: str | None = None,
    ) -> OutboxEntry | None:
        return await in_session(
            s, lambda conn: finish_in(conn, outbox_id, from_states, values, outcome, error)
        )

    async def mark_sent(
        self, outbox_id: str, remote_id: str | None, *, session: AsyncSession | None = None
    ) -> OutboxEntry | None:
        """The network accepted it. None when the entry is not in flight (already sent, or cancelled)."""
        async with self._tx(session) as s:
            return await self._finish(
                s,
                outbox_id,
                (OutboxState.SENDING, OutboxState.QUEUED),
                {"state": OutboxState.SENT.value, "remote_id": remote_id, "last_error": None},
                "sent",
            )

    async def mark_failed(
        self,
        outbox_id: str,
        error: str,
        retry_at: datetime | None = None,
        *,
        session: AsyncSession | None = None,
    ) -> OutboxEntry | None:
        """A failed attempt: queued again for ``retry_at`` (transient), or ``failed`` for good (permanent)."""
        values, outcome = failed_values(error, retry_at)
        return await self._transact(
            session, lambda conn: finish_in(conn, outbox_id, (OutboxState.SENDING,), values, outcome, error)
        )

    async def dead_letter(
        self, outbox_id: str, error: str, *, session: AsyncSession | None = None
    ) -> OutboxEntry | None:
        """Out of attempts: the entry waits for an operator (``msgr-bridge outbox retry|cancel``)."""
        values = {"state": OutboxState.DEAD.value, "last_error": error}
        return await self._transact(
            session, lambda conn: finish_in(conn, outbox_id, DEAD_FROM, values, "dead", error)
        )

    async def mark_status(
        self, outbox_id: str, state: OutboxState, *, session: AsyncSession | None = None
    ) -> OutboxEntry | None:
        """A later delivery report (delivered, read). Only moves forward; None when it would not."""
        allowed = {
            OutboxState.DELIVERED: (OutboxState.SENT,),
            OutboxState.READ: (OutboxState.SENT, OutboxState.DELIVERED),
        }
        if state not in allowed:
            raise ValueError(f"mark_status takes delivered or read, not {state}")
        async with self._tx(session) as s:
            return await self._finish(s, outbox_id, allowed[state], {"state": state.value}, None)

    async def cancel(self, outbox_id: str, *, session: AsyncSession | None = None) -> OutboxEntry | None:
        """Cancel an entry that is not in flight or sent; None when it cannot be cancelled."""
        async with self._tx(session) as s:
            return await self._finish(
                s,
                outbox_id,
                (OutboxState.SCHEDULED, OutboxState.QUEUED, OutboxState.FAILED, OutboxState.DEAD),
                {"state": OutboxState.CANCELLED.value},
                None,
            )

    async def reschedule(
        self,
        outbox_id: str,
        *,
        payload: Mapping[str, Any] | None = None,
        send_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> OutboxEntry | None:
        """Change a scheduled entry's content and/or time; None when it is no longer scheduled (it went
        out, or was cancelled): the update and the state check are one statement."""
        values: dict[str, Any] = {}
        if payload is not None:
            values["payload"] = dict(payload)
        if send_at is not None:
            values["next_attempt_at"] = send_at
        async with self._tx(session) as s:
            return await self._finish(s, outbox_id, (OutboxState.SCHEDULED,), values, None)

    async def requeue(
        self, outbox_id: str, *, now: datetime | None = None, session: AsyncSession | None = None
    ) -> OutboxEntry | None:
        """An operator's retry of a failed, dead or cancelled entry: queued now, with a fresh retry budget."""
        async with self._tx(session) as s:
            return await self._finish(
                s,
                outbox_id,
                (OutboxState.FAILED, OutboxState.DEAD, OutboxState.CANCELLED),
                {"state": OutboxState.QUEUED.value, "attempts": 0, "next_attempt_at": now or utcnow()},
                None,
            )

    async def mark_on_wire(
        self, outbox_ids: builtins.list[str], *, session: AsyncSession | None = None
    ) -> None:
        """These claimed entries are about to be written to the network: their open attempt says so. Commit
        this before the write; after a crash only entries marked here can have reached the network."""
        if outbox_ids:
            await self._transact(session, lambda conn: mark_on_wire_in(conn, outbox_ids))

    async def recover_stuck_sending(
        self, older_than: datetime, *, now: datetime | None = None
    ) -> builtins.list[OutboxEntry]:
        """After a crash: entries left ``sending`` since before ``older_than`` are queued again (same
        ``txn_id``). An entry whose open attempt was marked ``on_wire`` (its send was being written) has
        that attempt closed as ``interrupted``: possibly sent. One that was only claimed, never written,
        loses its open attempt row (nothing was tried, so it does not count). Returns them, oldest first."""
        now = now or utcnow()
        async with self.db.session() as s:
            stmt = (
                update(OUTBOX)
                .where(OUTBOX.c.state == OutboxState.SENDING.value, OUTBOX.c.updated_at < older_than)
                .values(state=OutboxState.QUEUED.value, next_attempt_at=now, updated_at=now)
                .returning(*OUTBOX.c)
            )
            entries = [_entry(row) for row in (await s.execute(stmt)).all()]
            if entries:
                ids = [e.id for e in entries]
                open_attempt = (ATTEMPTS.c.outbox_id.in_(ids), ATTEMPTS.c.finished_at.is_(None))
                unwritten = (
                    await s.scalars(
                        select(ATTEMPTS.c.outbox_id).where(*open_attempt, ATTEMPTS.c.outcome.is_(None))
                    )
                ).all()
                await s.execute(
                    update(ATTEMPTS)
                    .where(*open_attempt, ATTEMPTS.c.outcome == ON_WIRE)
                    .values(finished_at=now, outcome="interrupted", error="found on the wire after a restart")
                )
                if unwritten:
                    await s.execute(delete(ATTEMPTS).where(*open_attempt))
                    await s.execute(
                        update(OUTBOX)
                        .where(OUTBOX.c.id.in_(list(unwritten)), OUTBOX.c.attempts > 0)
                        .values(attempts=OUTBOX.c.attempts - 1)
                    )
                    entries = [
                        replace(e, attempts=max(0, e.attempts - 1)) if e.id in set(unwritten) else e
                        for e in entries
                    ]
        return _order(entries)

    async def list(
        self,
        state: OutboxState | None = None,
        *,
        tenant: str | None = None,
        account_id: str | None = None,
        limit: int = 100,
        by_due: bool = False,
        session: AsyncSession | None = None,
    ) -> builtins.list[OutboxEntry]:
        """Entries, oldest first (``by_due``: soonest due first), optionally by state, tenant and account
        (``msgr-bridge outbox list``, ``GET /v1/outbox``)."""
        order = (OUTBOX.c.next_attempt_at,) if by_due else ()
        stmt = select(*OUTBOX.c).order_by(*order, OUTBOX.c.created_at, OUTBOX.c.id).limit(limit)
        if state is not None:
            stmt = stmt.where(OUTBOX.c.state == OutboxState(state).value)
        if tenant is not None:
            stmt = stmt.where(OUTBOX.c.tenant == tenant)
        if account_id is not None:
            stmt = stmt.where(OUTBOX.c.account_id == account_id)
        async with self._read(session) as s:
            return [_entry(row) for row in (await s.execute(stmt)).all()]

    async def attempts(
        self, outbox_id: str, *, session: AsyncSession | None = None
    ) -> builtins.list[AttemptRecord]:
        stmt = (
            select(ATTEMPTS.c.attempt, ATTEMPTS.c.started_at, ATTEMPTS.c.finished_at)
            .add_columns(ATTEMPTS.c.outcome, ATTEMPTS.c.error)
            .where(ATTEMPTS.c.outbox_id == outbox_id)
            .order_by(ATTEMPTS.c.attempt)
        )
        async with self._read(session) as s:
            return [AttemptRecord(*row) for row in (await s.execute(stmt))]


def finish_in(
    conn: Connection,
    outbox_id: str,
    from_states: tuple[OutboxState, ...],
    values: dict[str, Any],
    outcome: str | None,
    error: str | None = None,
) -> OutboxEntry | None:
    """An entry in flight ends an attempt (sent, failed, queued again, dead): the outbox row moves when it
    is in one of ``from_states`` (None otherwise), and its open attempt row is closed with ``outcome``."""
    now = utcnow()
    stmt = (
        update(OUTBOX)
        .where(OUTBOX.c.id == outbox_id, OUTBOX.c.state.in_([st.value for st in from_states]))
        .values(**values, updated_at=now)
        .returning(*OUTBOX.c)
    )
    row = conn.execute(stmt).first()
    if row is None:
        return None
    if outcome is not None:
        conn.execute(
            update(ATTEMPTS)
            .where(ATTEMPTS.c.outbox_id == outbox_id, ATTEMPTS.c.finished_at.is_(None))
            .values(finished_at=now, outcome=outcome, error=error)
        )
    return _entry(row)


def failed_values(error: str, retry_at: datetime | None) -> tuple[dict[str, Any], str]:
    """``mark_failed``'s new values and attempt outcome: queued again for ``retry_at``, or failed."""
    if retry_at is not None:
        return {"state": OutboxState.QUEUED.value, "next_attempt_at": retry_at, "last_error": error}, "retry"
    return {"state": OutboxState.FAILED.value, "last_error": error}, "failed"


DEAD_FROM = (OutboxState.SENDING, OutboxState.QUEUED, OutboxState.FAILED)


def mark_on_wire_in(conn: Connection, outbox_ids: Collection[str]) -> None:
    """``OutboxRepo.mark_on_wire`` in ``conn``'s transaction."""
    if outbox_ids:
        _ON_WIRE.rows(conn, {"b_ids": list(outbox_ids)})


def get_in(conn: Connection, outbox_id: str) -> OutboxEntry | None:
    row = conn.execute(select(*OUTBOX.c).where(OUTBOX.c.id == outbox_id)).first()
    return _entry(row) if row is not None else None
