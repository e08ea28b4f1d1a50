"""The outbound request, how it is stored in an outbox row, and the outbox transitions the delivery worker
needs beyond ``store.repos.outbox.OutboxRepo``.

``OutboundRequest`` is what the API (or any caller) submits: validated on construction (pydantic), so a
malformed request is refused with a field-level error before anything is stored. Its content goes into the
outbox row's ``payload`` (JSON); the worker rebuilds the ``OutboundMessage`` from it with the row's
``txn_id``.

``OutboxOps`` adds the transitions that do not burn an attempt: ``release`` puts an entry the worker
claimed back in the queue (the conversation is blocked behind an older entry, the bucket is rate limited,
the account is not connected), decrementing ``attempts`` again so only real failures count toward
``[outbound] max_attempts``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Select, bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..schema import Attachment, Mention, OutboundMessage, ReactionAction, TextFormat, content_of
from ..store.db import Database
from ..store.models import DeliveryAttempt, MessageRow, OutboxRow
from ..store.repos._base import dialect_insert, new_id, table
from ..store.repos.outbox import OutboxAction, OutboxEntry, OutboxRepo, OutboxState
from ..store.types import utcnow

Action = Literal["send", "edit", "delete", "react", "mark_read", "typing"]

_ENVELOPE = {"tenant", "account_id", "conversation_id", "action", "idempotency_key", "send_at"}


class OutboundRequest(BaseModel):
    """One outbound action on behalf of ``user``, through ``account_id``, in ``conversation_id``.

    Which fields an action needs: ``send``: ``text`` and/or ``attachments`` (optional ``reply_to``,
    ``thread_id``, ``formatted``/``format``, ``mentions``); ``edit``: ``target_id`` and ``text``;
    ``delete``: ``target_id``; ``react``: ``target_id``, ``emoji`` and ``reaction`` (add/remove);
    ``mark_read``: ``up_to_id``; ``typing``: ``active`` (never queued). ``idempotency_key`` makes a
    retried request return the entry of the first one instead of sending twice. A send with ``send_at``
    waits ``scheduled`` in the outbox until then (the row's ``next_attempt_at``, not its payload).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(min_length=1)
    user: str | None = None
    """The Msgr user on whose behalf the bridge speaks (None: the tenant itself, e.g. an operator tool)."""
    account_id: str = Field(min_length=1)
    conversation_id: str = Field(min_length=1)
    action: Action = "send"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    text: str = ""
    formatted: str | None = None
    format: TextFormat = TextFormat.PLAIN
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    thread_id: str | None = None
    mentions: tuple[Mention, ...] = ()
    target_id: str | None = None
    emoji: str | None = None
    reaction: ReactionAction = ReactionAction.ADD
    up_to_id: str | None = None
    active: bool = True
    send_at: AwareDatetime | None = None
    trace: dict[str, str] | None = None
    """The trace the request was made under (W3C ``traceparent``), set by ``OutboundService`` while
    tracing is on and kept in the outbox row's payload so the delivery worker continues that trace."""

    @model_validator(mode="after")
    def _fields_for_action(self) -> Self:
        need: dict[str, tuple[str, ...]] = {
            "edit": ("target_id",),
            "delete": ("target_id",),
            "react": ("target_id", "emoji"),
            "mark_read": ("up_to_id",),
        }
        missing = [f for f in need.get(self.action, ()) if not getattr(self, f)]
        if missing:
            raise ValueError(f"action {self.action!r} needs {', '.join(missing)}")
        if self.action == "send" and not self.text and not self.attachments:
            raise ValueError("a send needs text or at least one attachment")
        if self.send_at is not None and self.action != "send":
            raise ValueError("only a send can be scheduled (send_at)")
        return self

    def payload(self) -> dict[str, Any]:
        """What goes into the outbox row (everything but the row's own columns), JSON-ready."""
        return self.model_dump(mode="json", exclude=_ENVELOPE, exclude_defaults=True)

    def message(self, txn_id: str) -> OutboundMessage:
        return OutboundMessage(txn_id=txn_id, **content_of(self))

    @classmethod
    def from_entry(cls, entry: OutboxEntry) -> OutboundRequest:
        """Rebuild the request an outbox entry was created from."""
        return cls.model_validate(
            {
                **dict(entry.payload),
                "tenant": entry.tenant,
                "account_id": entry.account_id,
                "conversation_id": entry.conversation_id,
                "action": entry.action.value,
                "idempotency_key": entry.idempotency_key,
            }
        )

    def same_request(self, entry: OutboxEntry) -> bool:
        """Whether ``entry`` was created from this very request (for idempotency-key reuse checks)."""
        return (
            entry.account_id == self.account_id
            and entry.conversation_id == self.conversation_id
            and entry.action.value == self.action
        )


ATTEMPTS = table(DeliveryAttempt)
OUTBOX = table(OutboxRow)
# The send path's statements, built once (values travel as parameters; see outbox.py).
_INSERT_OUTBOX = OUTBOX.insert()
_ATTEMPTS_SENT = (
    update(ATTEMPTS)
    .where(ATTEMPTS.c.outbox_id.in_(bindparam("b_ids", expanding=True)), ATTEMPTS.c.finished_at.is_(None))
    .values(finished_at=bindparam("b_now", type_=ATTEMPTS.c.finished_at.type), outcome="sent", error=None)
)
_INTERRUPTED = (
    select(ATTEMPTS.c.outbox_id)
    .where(ATTEMPTS.c.outbox_id.in_(bindparam("b_ids", expanding=True)), ATTEMPTS.c.outcome == "interrupted")
    .distinct()
)
_IN_FLIGHT = [OutboxState.SENDING.value, OutboxState.QUEUED.value]
_MARK_SENT_ONE = (
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


class OutboxOps:
    """Outbox statements the repository does not have; each runs in the caller's session."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_key(self, s: AsyncSession, tenant: str, idempotency_key: str) -> OutboxEntry | None:
        stmt = select(OutboxRow.id).where(
            OutboxRow.tenant == tenant, OutboxRow.idempotency_key == idempotency_key
        )
        outbox_id = await s.scalar(stmt)
        return None if outbox_id is None else await OutboxRepo(self.db).get(outbox_id, session=s)

    async def by_keys(self, s: AsyncSession, tenant: str, keys: Sequence[str]) -> dict[str, OutboxEntry]:
        """The entries already holding any of ``keys`` (one query; a repeat is the rare case)."""
        if not keys:
            return {}
        stmt = select(OutboxRow.idempotency_key, OutboxRow.id).where(
            OutboxRow.tenant == tenant, OutboxRow.idempotency_key.in_(list(set(keys)))
        )
        found: dict[str, OutboxEntry] = {}
        for key, outbox_id in (await s.execute(stmt)).all():
            entry = await OutboxRepo(self.db).get(outbox_id, session=s)
            if key is not None and entry is not None:
                found[key] = entry
        return found

    async def create_many(
        self,
        s: AsyncSession,
        items: Sequence[tuple[OutboundRequest, Mapping[str, Any], str]],
        not_before: Callable[[OutboundRequest], datetime | None] | None = None,
    ) -> list[OutboxEntry | None]:
        """Insert (request, stored payload, txn_id) rows in one statement; per item the new entry, or None
        when its idempotency key is already taken (look the existing entry up with ``by_key``).
        ``not_before`` may put an entry's first attempt later (its conversation is on hold)."""
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
        if plain:  # one row (a lone send) as a plain execute, several as an executemany
            await s.execute(_INSERT_OUTBOX, plain[0] if len(plain) == 1 else plain)
        if keyed:
            stmt = dialect_insert(s, OUTBOX).on_conflict_do_nothing().returning(OUTBOX.c.id)
            inserted.update((await s.execute(stmt, keyed)).scalars().all())
        return [e if e.id in inserted else None for e in entries]

    async def mark_sent_many(self, s: AsyncSession, entries: Sequence[OutboxEntry]) -> list[OutboxEntry]:
        """``OutboxRepo.mark_sent`` for a whole batch in two statements (the remote ids travel as
        parameters); returns the entries that were in flight and are now ``sent``."""
        if not entries:
            return []
        now = utcnow()
        remote = {e.id: e.remote_id for e in entries}
        # One UPDATE ... RETURNING for the batch: each row's remote id by a CASE on its id (a lone send,
        # the everyday case, is the statement built once).
        if len(remote) == 1:
            ((only, remote_id),) = remote.items()
            stmt, params = _MARK_SENT_ONE, {"b_id": only, "b_remote": remote_id, "b_now": now}
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
            params = {}
        done_ids = set((await s.scalars(stmt, params)).all())
        done = [e for e in entries if e.id in done_ids]
        if not done:
            return []
        await s.execute(_ATTEMPTS_SENT, {"b_ids": [e.id for e in done], "b_now": now})
        return done

    async def fail_new(self, s: AsyncSession, outbox_id: str, reason: str) -> None:
        """A just-created entry refused by policy: ``failed`` with the reason, no attempt made."""
        waiting = [OutboxState.QUEUED.value, OutboxState.SCHEDULED.value]
        await s.execute(
            update(OutboxRow)
            .where(OutboxRow.id == outbox_id, OutboxRow.state.in_(waiting))
            .values(state=OutboxState.FAILED.value, last_error=reason, updated_at=utcnow())
        )

    async def release(
        self,
        s: AsyncSession,
        outbox_id: str,
        until: datetime,
        *,
        outcome: str | None = None,
        error: str | None = None,
    ) -> None:
        """Back to ``queued`` until ``until`` without using up an attempt. With ``outcome`` the open attempt
        row is closed with it (the platform was called: ``rate_limited``, ``not_connected``); without, it
        is removed (nothing was tried)."""
        await self.release_many(s, [outbox_id], until, outcome=outcome, error=error)

    async def release_many(
        self,
        s: AsyncSession,
        ids: Sequence[str],
        until: datetime,
        *,
        outcome: str | None = None,
        error: str | None = None,
    ) -> None:
        """``release`` for several entries in two statements (a held conversation releases its whole
        batch at once)."""
        if not ids:
            return
        now = utcnow()
        wanted = list(ids)
        await s.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(wanted), OutboxRow.state == OutboxState.SENDING.value)
            .values(
                state=OutboxState.QUEUED.value,
                next_attempt_at=until,
                attempts=func.max(OutboxRow.attempts - 1, 0)
                if self.db.is_sqlite
                else func.greatest(OutboxRow.attempts - 1, 0),
                updated_at=now,
            )
        )
        open_attempt = (ATTEMPTS.c.outbox_id.in_(wanted), ATTEMPTS.c.finished_at.is_(None))
        if outcome is None:
            await s.execute(delete(ATTEMPTS).where(*open_attempt))
        else:
            await s.execute(
                update(ATTEMPTS).where(*open_attempt).values(finished_at=now, outcome=outcome, error=error)
            )

    async def interrupted(self, s: AsyncSession, ids: Sequence[str]) -> set[str]:
        """Which of these entries have an attempt that was found in flight after a crash."""
        if not ids:
            return set()
        return set((await s.scalars(_INTERRUPTED, {"b_ids": list(ids)})).all())

    async def echoes(self, s: AsyncSession, txn_ids: Iterable[str]) -> dict[str, str]:
        """txn_id -> remote id of messages already stored with one of these transaction ids (echoes)."""
        wanted = list(txn_ids)
        if not wanted:
            return {}
        stmt = select(MessageRow.txn_id, MessageRow.remote_id).where(MessageRow.txn_id.in_(wanted))
        return {t: r for t, r in (await s.execute(stmt)).all() if t is not None}

    async def blocked(self, s: AsyncSession, claimed: Sequence[OutboxEntry]) -> dict[str, datetime]:
        """Claimed entries that must wait because an OLDER entry of the same conversation is still queued
        (waiting for a retry) or in flight elsewhere: entry id -> when to look again."""
        if not claimed:
            return {}
        oldest: dict[tuple[str, str], tuple[datetime, str, datetime]] = {}
        for row in (await s.execute(_BLOCKERS, _blockers_params(claimed))).all():
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

    async def next_due(self) -> tuple[datetime | None, datetime | None]:
        """When the earliest queued entry and the earliest scheduled one become due (None: none waits)."""

        def earliest(state: OutboxState) -> Any:  # one index lookup per state (an IN list would scan)
            return select(func.min(OutboxRow.next_attempt_at)).where(OutboxRow.state == state.value)

        async with self.db.read() as s:
            stmt = select(
                earliest(OutboxState.QUEUED).scalar_subquery(),
                earliest(OutboxState.SCHEDULED).scalar_subquery(),
            )
            queued, scheduled = (await s.execute(stmt)).one()
            return queued, scheduled

    async def hold_until(self, ids: Sequence[str], until: datetime) -> None:
        """Queued entries wait until ``until`` (recovered sends give their echo time to arrive)."""
        if not ids:
            return
        async with self.db.session() as s:
            await s.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)), OutboxRow.state == OutboxState.QUEUED.value)
                .values(next_attempt_at=until)
            )


def describe(entry: OutboxEntry) -> Mapping[str, Any]:
    """A JSON-ready view of an entry (``msgr-bridge outbox list --json`` and the API)."""
    return {
        "id": entry.id,
        "tenant": entry.tenant,
        "account_id": entry.account_id,
        "conversation_id": entry.conversation_id,
        "action": entry.action.value,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at.isoformat(),
        "last_error": entry.last_error,
        "remote_id": entry.remote_id,
        "txn_id": entry.txn_id,
        "idempotency_key": entry.idempotency_key,
        "created_at": entry.created_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
    }


_BLOCKERS = select(
    OUTBOX.c.id, OUTBOX.c.account_id, OUTBOX.c.conversation_id, OUTBOX.c.created_at, OUTBOX.c.next_attempt_at
).where(
    OUTBOX.c.account_id.in_(bindparam("b_accounts", expanding=True)),
    OUTBOX.c.conversation_id.in_(bindparam("b_conversations", expanding=True)),
    OUTBOX.c.state.in_([OutboxState.QUEUED.value, OutboxState.SENDING.value]),
    OUTBOX.c.created_at <= bindparam("b_newest", type_=OUTBOX.c.created_at.type),
    OUTBOX.c.id.not_in(bindparam("b_ids", expanding=True)),
)


def _blockers_params(claimed: Sequence[OutboxEntry]) -> dict[str, Any]:
    return {
        "b_accounts": sorted({e.account_id for e in claimed}),
        "b_conversations": sorted({e.conversation_id for e in claimed}),
        "b_newest": max(e.created_at for e in claimed),
        "b_ids": [e.id for e in claimed],
    }


def blockers_query(claimed: Sequence[OutboxEntry]) -> Select[str, str, str, datetime, datetime]:
    """Queued or in-flight entries of the claimed entries' conversations, not newer than the newest claimed
    one (what ``OutboxOps.blocked`` looks at, with its parameters bound; ix_outbox_conversation_state
    answers it without reading the conversations' sent history)."""
    return _BLOCKERS.params(_blockers_params(claimed))
