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

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..schema import Attachment, Mention, OutboundMessage, ReactionAction, TextFormat, content_of
from ..store.db import Database
from ..store.models import OutboxRow
from ..store.repos._base import in_session
from ..store.repos.outbox import OutboxEntry, OutboxRepo, OutboxState
from .outbox_statements import (
    blockers_query,
    by_key_in,
    interrupted_in,
    release_many_in,
)

__all__ = ["OutboundRequest", "OutboxOps", "blockers_query", "describe"]

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


class OutboxOps:
    """Outbox statements the repository does not have; each runs in the caller's session."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_key(self, s: AsyncSession, tenant: str, idempotency_key: str) -> OutboxEntry | None:
        return await in_session(s, lambda conn: by_key_in(conn, tenant, idempotency_key))

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
        if ids:
            await in_session(s, lambda conn: release_many_in(conn, ids, until, outcome=outcome, error=error))

    async def interrupted(self, s: AsyncSession, ids: Sequence[str]) -> set[str]:
        """Which of these entries have an attempt that was found in flight after a crash."""
        if not ids:
            return set()
        return await in_session(s, lambda conn: interrupted_in(conn, ids))

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
