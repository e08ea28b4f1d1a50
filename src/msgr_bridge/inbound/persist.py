"""Persist: one batch of canonical events (and quarantined payloads) in ONE database transaction.

Messages go in first, in one multi-row insert whose unique constraints do the deduplication (a duplicate,
a second linked account's copy and an echo of our own send are told apart there, see ``MessageRepo``);
then edits, deletes, reactions, receipts and membership changes in arrival order, so a change that follows
its message in the same batch finds it. Every event that changed the store is appended to the event log in
the same transaction: the API's stream can never show an event that was rolled back, nor miss one that
was committed. A receipt of a message the bridge sent also moves its outbox entry forward (``delivered``,
then ``read``) and logs that ``delivery_status`` in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import DatabaseError
from ..outbound.statuses import StatusPublisher
from ..schema import (
    Delete,
    DeliveryState,
    DeliveryStatus,
    Edit,
    Event,
    MembershipChange,
    Message,
    MessageReceipt,
    Reaction,
    ReadReceipt,
    ReceiptState,
)
from ..store.db import Database
from ..store.repos import message_inserts_pg
from ..store.repos.entities import MembershipRepo, ReactionRepo, ReadMarkerRepo
from ..store.repos.event_log import EventLogRepo, LoggedEvent, NewEvent, log_rows
from ..store.repos.message_inserts_thread import MessageStatements, insert_and_log
from ..store.repos.message_records import BatchResult, InsertOutcome
from ..store.repos.messages import ChangeOutcome, MessageRepo
from ..store.repos.outbox import OutboxRepo, OutboxState
from ..store.repos.quarantine import QuarantineRepo
from ..store.repos.receipts import ReceiptRepo
from ..store.types import utcnow
from .normalize import Quarantined
from .records import Outcome, Stored

LOGGED: frozenset[Outcome] = frozenset({"created", "applied"})
SHORT_BATCH = 8
"""Messages a batch may hold to be written on the event loop's own thread (``Database.on_writer_thread``,
``short``): the everyday lone message, without the trip to the writer's thread. A longer batch (a burst)
goes to the thread, so the loop keeps serving meanwhile."""


def _refused(exc: Exception) -> DatabaseError:
    first_line = (str(exc).splitlines() or [""])[0]
    return DatabaseError(
        f"storing an inbound batch failed: {type(exc).__name__}: {first_line}",
        hint="retried while the database does not answer; what it refuses is quarantined",
    )


def _change(outcome: ChangeOutcome) -> Outcome:
    if outcome.applied:
        return "applied"
    return "stale" if outcome.target_exists else "missing_target"


def _stored(
    tenant: str,
    messages: Sequence[Message],
    result: BatchResult,
    now: datetime,
    payloads: Iterator[Mapping[str, Any]],
) -> list[Stored]:
    """What a batch of messages stored with its log entries (``result``) did; ``payloads``: the logged
    payloads of the created messages, in order."""
    logged = iter(result.seqs)
    out: list[Stored] = []
    for m, o in zip(messages, result.outcomes, strict=True):
        if o.created:
            seq = next(logged)
            entry = LoggedEvent(seq, tenant, m.account_id, m.conversation_id, m.kind, next(payloads), now)
            out.append(Stored(m, "created", seq, logged=entry))
        else:
            out.append(Stored(m, "linked" if o.linked_account else "duplicate"))
    return out


class DatabaseInboundStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.messages = MessageRepo(db)
        self.reactions = ReactionRepo(db)
        self.read_markers = ReadMarkerRepo(db)
        self.receipts = ReceiptRepo(db)
        self.outbox = OutboxRepo(db)
        self.memberships = MembershipRepo(db)
        self.event_log = EventLogRepo(db)
        self.quarantine = QuarantineRepo(db)
        self._statements: MessageStatements | None = None
        self._recent_ids = message_inserts_pg.RecentIds()

    async def persist(
        self, tenant: str, events: Sequence[Event], quarantined: Sequence[Quarantined]
    ) -> list[Stored]:
        if events and not quarantined and all(isinstance(e, Message) for e in events):
            messages = cast(Sequence[Message], events)
            if self.db.writes_on_thread:
                return await self._messages_on_thread(tenant, messages)
            if self.db.dialect == "postgresql" and message_inserts_pg.fits(messages):
                return await self._messages_in_one_statement(tenant, messages)
        try:
            async with self.db.session() as session:
                inserted = iter(
                    await self.messages.insert_batch(session, [e for e in events if isinstance(e, Message)])
                )
                results: list[tuple[Event, Outcome]] = []
                statuses: list[DeliveryStatus] = []
                for event in events:
                    outcome: Outcome
                    if isinstance(event, Message):
                        o = next(inserted)
                        outcome = "created" if o.created else ("linked" if o.linked_account else "duplicate")
                    elif isinstance(event, Edit):
                        outcome = _change(await self.messages.apply_edit(session, event))
                    elif isinstance(event, Delete):
                        outcome = _change(await self.messages.apply_delete(session, event))
                    elif isinstance(event, Reaction):
                        r = await self.reactions.apply(session, event)
                        outcome = (
                            "applied" if r.changed else ("stale" if r.target_exists else "missing_target")
                        )
                    elif isinstance(event, ReadReceipt):
                        outcome = "applied" if await self.read_markers.upsert(session, event) else "stale"
                    elif isinstance(event, MessageReceipt):
                        outcome = await self._receipt(session, event, statuses)
                    elif isinstance(event, MembershipChange):
                        outcome = "applied" if await self.memberships.apply(session, event) else "stale"
                    else:  # Typing never reaches persistence
                        continue
                    results.append((event, outcome))
                for q in quarantined:
                    await self.quarantine.add(q.network, q.account_id, q.payload, q.error, session=session)
                logged = [(e, o) for e, o in results if o in LOGGED]
                now = utcnow()
                entries = [
                    NewEvent(tenant, e.account_id, e.conversation_id, e.kind, e.model_dump(mode="json"))
                    for e in [*(e for e, _ in logged), *statuses]
                ]
                seqs = await self.event_log.append_many(session, entries, now=now)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: a driver refusing to encode (surrogates)
            raise _refused(exc) from exc
        entry_of = {
            id(e): LoggedEvent(seq, tenant, n.account_id, n.conversation_id, n.kind, n.payload, now)
            for (e, _), n, seq in zip(logged, entries, seqs, strict=False)
        }
        out: list[Stored] = []
        for event, outcome in results:
            entry = entry_of.get(id(event))
            out.append(Stored(event, outcome, entry.seq if entry else None, logged=entry))
        return out

    async def _messages_on_thread(self, tenant: str, messages: Sequence[Message]) -> list[Stored]:
        """The everyday batch (only messages) on SQLite: one trip to the writer's thread for the whole
        transaction (``message_inserts_thread``); the same outcomes and event-log entries as above."""
        if self._statements is None:
            self._statements = MessageStatements(self.db.engine.dialect)
        now = utcnow()
        entries: list[NewEvent] = []

        def rows_to_log(outcomes: list[InsertOutcome]) -> list[dict[str, Any]]:
            entries[:] = [
                NewEvent(tenant, m.account_id, m.conversation_id, m.kind, m.model_dump(mode="json"))
                for m, o in zip(messages, outcomes, strict=True)
                if o.created
            ]
            return log_rows(entries, now)

        try:
            work = insert_and_log(self._statements, messages, rows_to_log)
            result = await self.db.on_writer_thread(work, short=len(messages) <= SHORT_BATCH)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: text SQLite cannot encode (surrogates)
            raise _refused(exc) from exc
        return _stored(tenant, messages, result, now, iter(n.payload for n in entries))

    async def _messages_in_one_statement(self, tenant: str, messages: Sequence[Message]) -> list[Stored]:
        """The everyday batch (only messages, none an echo of our send) on PostgreSQL: ONE statement, one
        round trip (``message_inserts_pg``); the same outcomes and event-log entries as above."""
        now = utcnow()
        try:
            result = await message_inserts_pg.insert_and_log(
                self.db.engine, tenant, messages, now, self._recent_ids
            )
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: text JSON cannot carry (surrogates)
            raise _refused(exc) from exc
        created = (
            m.model_dump(mode="json") for m, o in zip(messages, result.outcomes, strict=True) if o.created
        )
        return _stored(tenant, messages, result, now, created)

    async def _receipt(
        self, session: AsyncSession, event: MessageReceipt, statuses: list[DeliveryStatus]
    ) -> Outcome:
        r = await self.receipts.apply(session, event)
        if not r.target_exists:
            return "missing_target"
        if r.changed and r.outbox_id is not None:
            read = event.state is ReceiptState.READ
            state = OutboxState.READ if read else OutboxState.DELIVERED
            entry = await self.outbox.mark_status(r.outbox_id, state, session=session)
            if entry is not None:
                statuses.append(
                    StatusPublisher.status(entry, DeliveryState.READ if read else DeliveryState.DELIVERED)
                )
        return "applied" if r.changed else "stale"

    async def reachable(self) -> bool:
        try:
            async with self.db.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception:  # any failure to answer is an outage to wait out
            return False
        return True
