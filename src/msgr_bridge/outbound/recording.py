"""Recording delivery outcomes: a group of results (and wire markers) in ONE transaction.

``apply`` first marks the attempts of entries about to be written as ``on_wire``; then, for each result, the
outbox row moves (sent, queued again for a retry or a wait, failed, dead), its attempt row is closed, and a
``delivery_status`` event is appended to the event log. What a successful action changed is stored as the
canonical event it is: a send becomes a ``messages`` row carrying our ``txn_id`` and ``sender.is_self=True``,
so the echo that comes back inbound hits the same key (or the same transaction id) and is recognised as a
duplicate instead of being stored twice; an edit, delete, reaction or read marker is applied to the store the
way the inbound pipeline would. Created events are appended to the event log in the same transaction and
published on ``{tenant}.{network}.stored`` after the commit, like inbound ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from ..bus import topic
from ..errors import BusClosed
from ..inbound.dedupe import DedupeCache, message_key
from ..inbound.notify import StoredEvent
from ..schema import (
    Delete,
    DeliveryState,
    DeliveryStatus,
    Edit,
    Event,
    Message,
    Reaction,
    ReadReceipt,
    Sender,
)
from ..store.db import Database
from ..store.repos._base import in_session
from ..store.repos.entities import ReactionRepo, ReadMarkerRepo
from ..store.repos.event_log import LoggedEvent, NewEvent, append_many_in, logged_entries
from ..store.repos.message_inserts import insert_batch_in
from ..store.repos.messages import MessageRepo
from ..store.repos.outbox import (
    DEAD_FROM,
    OutboxEntry,
    OutboxState,
    failed_values,
    finish_in,
    mark_on_wire_in,
)
from ..store.types import utcnow
from .outbox_statements import mark_sent_many_in, release_many_in
from .statuses import logged, new_events

log = structlog.get_logger("msgr_bridge.outbound.recording")

if TYPE_CHECKING:
    from .delivery_types import Result
    from .statuses import StatusPublisher

Published = dict[tuple[str, str], list[DeliveryStatus]]
SHORT_BATCH = 8
"""Results a commit may hold to run on the event loop's own thread (``Database.transact(short=)``): a lone
send's record and the next one's wire marker; a larger group commit goes to the writer's thread."""


def own_event(r: Result) -> Event | None:
    """The canonical event of a successful action, sent by the account itself."""
    request, speaker, sent = r.request, r.speaker, r.result
    if request is None or speaker is None or r.echo:
        return None
    account = speaker.account
    me = Sender(user_id=account.remote_user_id, display_name=account.display_name, is_self=True)
    base: dict[str, Any] = {
        "network": account.network,
        "account_id": account.id,
        "conversation_id": request.conversation_id,
    }
    if sent is not None:
        base["timestamp"] = sent.timestamp
    match request.action:
        case "send" if sent is not None:
            return Message(
                **base,
                remote_id=sent.remote_id,
                sender=me,
                text=request.text,
                formatted=request.formatted,
                format=request.format,
                attachments=request.attachments,
                reply_to=request.reply_to,
                thread_id=request.thread_id,
                mentions=request.mentions,
                txn_id=r.entry.txn_id,
            )
        case "edit" if request.target_id:
            return Edit(
                **base,
                target_id=request.target_id,
                remote_id=sent.remote_id if sent else None,
                sender=me,
                text=request.text,
                formatted=request.formatted,
                format=request.format,
            )
        case "delete" if request.target_id:
            return Delete(**base, target_id=request.target_id, sender=me)
        case "react" if request.target_id and request.emoji:
            return Reaction(
                **base,
                target_id=request.target_id,
                sender=me,
                emoji=request.emoji,
                action=request.reaction,
            )
        case "mark_read" if request.up_to_id:
            return ReadReceipt(**base, up_to_id=request.up_to_id, reader=me)
    return None


class Recorder:
    def __init__(self, db: Database, statuses: StatusPublisher, dedupe: DedupeCache | None = None) -> None:
        self.db = db
        self.statuses = statuses
        self.dedupe = dedupe
        """The inbound pipeline's cache: a recorded send is entered there, so its echo is dropped before
        any database work (the unique key would refuse it anyway)."""
        self.messages = MessageRepo(db)
        self.reactions = ReactionRepo(db)
        self.read_markers = ReadMarkerRepo(db)

    async def apply(self, results: list[Result], *, on_wire: Sequence[str] = ()) -> Published:
        """Store the results and wire markers; returns the statuses to publish per (tenant, network).
        Publishing of the created events (``.stored``) is done here too, after the commit.

        One ``Database.transact`` (on SQLite, whole on the writer's thread). A successful edit, delete,
        reaction or read marker is applied to the store the way the inbound pipeline applies one, which
        takes a session: a batch with one of those runs in a session instead, the same statements."""
        if any(r.kind == "sent" and _changes_store(r) for r in results):
            async with self.db.session() as s:
                rec = await in_session(s, lambda conn: self._record_in(conn, results, on_wire))
                for tenant, event in rec.changes:
                    if await self._change(s, event):
                        rec.created.append((tenant, event))
                await in_session(s, lambda conn: self._log_in(conn, rec))
        else:
            rec = await self.db.transact(
                lambda conn: self._log_in(conn, self._record_in(conn, results, on_wire)),
                short=len(results) + len(on_wire) <= SHORT_BATCH,
            )
        if self.dedupe is not None:
            for m in rec.messages:
                self.dedupe.add(m.account_id, message_key(m))
        try:
            for (tenant, event), entry in zip(rec.created, rec.entries, strict=True):
                await self.statuses.bus.publish(
                    topic(tenant, event.network, "stored"),
                    StoredEvent(entry.seq, tenant, event, "created", logged=entry),
                    key=event.conversation_id,
                )
        except BusClosed:  # shutting down: the rows are committed, stream clients read them from the log
            log.info("outbound.stored_after_close", events=len(rec.created))
        return rec.published

    def _record_in(self, conn: Connection, results: list[Result], on_wire: Sequence[str]) -> _Recorded:
        """The outbox moves, attempt rows, statuses and our sent messages (run in the transaction, so it
        touches nothing but ``conn`` and the results)."""
        rec = _Recorded()
        mark_on_wire_in(conn, on_wire)
        sent = {e.id for e in mark_sent_many_in(conn, [_sent(r) for r in results if r.kind == "sent"])}
        # Entries held behind an older one of their conversation (nothing tried, nothing to report):
        # released together, one statement per hold time.
        quiet: dict[datetime, list[str]] = defaultdict(list)
        for r in results:
            if _quiet(r):
                assert r.until is not None
                quiet[r.until].append(r.entry.id)
        for until, ids in quiet.items():
            release_many_in(conn, ids, until)
        own: list[tuple[str, Event]] = []
        for r in results:
            if _quiet(r):
                continue
            if r.kind == "sent":
                status = self._sent_status(r) if r.entry.id in sent else None
            else:
                status = self._transition_in(conn, r)
            if status is None:
                continue
            entry, st = status
            rec.statuses[entry.tenant].append(st)
            if r.network:
                rec.published[(entry.tenant, r.network)].append(st)
            if r.kind == "sent" and (event := own_event(r)) is not None:
                own.append((entry.tenant, event))
        msgs = [(t, e) for t, e in own if isinstance(e, Message)]
        rec.messages = [e for _, e in msgs]
        outcomes = insert_batch_in(conn, rec.messages, {r.entry.txn_id: r.entry.id for r in results})
        rec.created.extend(pair for pair, o in zip(msgs, outcomes, strict=True) if o.created)
        rec.changes = [(t, e) for t, e in own if not isinstance(e, Message)]
        return rec

    @staticmethod
    def _log_in(conn: Connection, rec: _Recorded) -> _Recorded:
        """One event-log statement for the batch: the created events, then the delivery statuses (which
        then carry their entries, as ``rec.entries`` the created events')."""
        made = [
            NewEvent(t, e.account_id, e.conversation_id, e.kind, e.model_dump(mode="json"))
            for t, e in rec.created
        ]
        told = [st for sts in rec.statuses.values() for st in sts]
        reported = [new for t, sts in rec.statuses.items() for new in new_events(t, sts)]
        now = utcnow()
        seqs = append_many_in(conn, made + reported, now)
        rec.entries = logged_entries(made, seqs[: len(made)], now)
        logged(told, reported, seqs[len(made) :], now)
        return rec

    def _transition_in(self, conn: Connection, r: Result) -> tuple[OutboxEntry, DeliveryStatus] | None:
        e, status = r.entry, self.statuses.status
        match r.kind:
            case "retry":
                assert r.error is not None
                values, outcome = failed_values(r.error, r.until)
                updated = finish_in(conn, e.id, (OutboxState.SENDING,), values, outcome, r.error)
                return None if updated is None else (updated, status(updated, DeliveryState.QUEUED, r.error))
            case "release":  # with an outcome: the platform was called (quiet ones are released in bulk)
                assert r.until is not None
                release_many_in(conn, [e.id], r.until, outcome=r.outcome, error=r.error)
                return e, status(e, DeliveryState.QUEUED, r.error)
            case "failed":
                assert r.error is not None
                values, outcome = failed_values(r.error, None)
                updated = finish_in(conn, e.id, (OutboxState.SENDING,), values, outcome, r.error)
                return None if updated is None else (updated, status(updated, DeliveryState.FAILED, r.error))
            case "dead":
                reason = r.error or "gave up"
                values = {"state": OutboxState.DEAD.value, "last_error": reason}
                updated = finish_in(conn, e.id, DEAD_FROM, values, "dead", reason)
                return None if updated is None else (updated, status(updated, DeliveryState.DEAD, reason))
            case _:  # "sent" is recorded for the whole batch by mark_sent_many_in
                return None

    def _sent_status(self, r: Result) -> tuple[OutboxEntry, DeliveryStatus]:
        entry = _sent(r)
        return entry, self.statuses.status(entry, DeliveryState.SENT)

    async def _change(self, s: AsyncSession, event: Event) -> bool:
        if isinstance(event, Edit):
            return (await self.messages.apply_edit(s, event)).applied
        if isinstance(event, Delete):
            return (await self.messages.apply_delete(s, event)).applied
        if isinstance(event, Reaction):
            return (await self.reactions.apply(s, event)).changed
        if isinstance(event, ReadReceipt):
            return await self.read_markers.upsert(s, event)
        return False


@dataclass(slots=True)
class _Recorded:
    """What one recording transaction did, for what follows its commit."""

    statuses: dict[str, list[DeliveryStatus]] = field(default_factory=lambda: defaultdict(list))
    published: Published = field(default_factory=lambda: defaultdict(list))
    messages: list[Message] = field(default_factory=list)
    created: list[tuple[str, Event]] = field(default_factory=list)
    changes: list[tuple[str, Event]] = field(default_factory=list)
    """Our successful edits, deletes, reactions and read markers, applied to the store in a session."""
    entries: list[LoggedEvent] = field(default_factory=list)
    """The event-log entries of ``created``, in order."""


def _changes_store(r: Result) -> bool:
    """A successful action other than a send, whose own event changes stored rows (``Recorder._change``)."""
    return r.request is not None and r.request.action != "send" and own_event(r) is not None


def _quiet(r: Result) -> bool:
    """Held without calling the platform (behind an older entry, not connected, a local rate limit): the
    entry goes back to the queue with no status to report."""
    return r.kind == "release" and r.outcome is None


def _sent(r: Result) -> OutboxEntry:
    """The entry as ``mark_sent_many_in`` leaves it."""
    return replace(
        r.entry,
        state=OutboxState.SENT,
        remote_id=r.result.remote_id if r.result is not None else None,
        last_error=None,
    )
