"""Accepting outbound requests: request -> impersonation -> capability check -> policy -> outbox row.

``OutboundService.submit(request)`` is what the API calls. In order:

1. **Impersonation** (``impersonation.py``): the account must belong to the tenant (and to the user, when
   it has an owner). ``ImpersonationDenied`` otherwise.
2. **Idempotency**: a request whose ``idempotency_key`` is known returns the existing entry; nothing is
   evaluated or sent a second time. The key reused for a different request is refused.
3. **Capabilities**: asking what the network cannot do raises ``NotSupported`` naming the capability
   (edits, reactions, attachments, ...); text over ``max_text_length`` or an attachment outside the
   declared types and sizes raises ``OutboundRejected`` saying which limit. The API maps both to 422.
4. **Policy** (``policy.py``) for sends and edits, the actions that carry content. It runs *before* the
   row is written on purpose: a redaction must never leave the original text in the database. Evaluating
   first loses nothing: until the row is committed nothing was accepted, and nothing has been sent.
5. **The outbox row**, written with its transaction id in one transaction together with the audit records
   (``message.send|edit|delete`` for every impersonated action, ``policy.deny|hold|redact``) and the
   ``delivery_status`` event-log entry. A denial is stored as a ``failed`` entry carrying the reason the
   sender sees; a hold too (``held for confirmation: ...``): confirming it is ``outbox retry``.
6. A ``DeliveryStatus`` is published on ``{tenant}.{network}.delivery`` and the delivery worker is woken.

A send with ``send_at`` goes through the same steps and waits ``scheduled`` (``scheduled.py``: listed,
changed and cancelled until the delivery worker queues it at its time).

Typing notifications are ephemeral: ``send_typing`` calls the connector directly when the account is
connected and the network supports them, and never queues anything.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Connection

from ..bus import Bus
from ..errors import OutboundRejected
from ..flags import ACTION_CAPABILITIES, FeatureFlags
from ..observability import metrics as m
from ..observability import tracing
from ..schema import DeliveryState, DeliveryStatus, OutboundMessage
from ..store import audit
from ..store.db import Database
from ..store.repos.messages import MessageRepo
from ..store.repos.outbox import OutboxEntry, OutboxRepo, OutboxState
from ..store.types import utcnow
from .batcher import SubmitBatcher
from .capabilities import check_capabilities
from .held_conversations import ConversationHolds
from .impersonation import Impersonation, Speaker
from .outbox_statements import by_key_in, create_many_in, fail_new_in
from .policy import PolicyAction, PolicyEngine, PolicyOutcome, PolicyRequest
from .requests import OutboundRequest, OutboxOps
from .scheduled import check_send_at
from .statuses import StatusPublisher
from .waking import Wake

__all__ = ["OutboundService", "StatusPublisher", "Submission", "check_capabilities"]

log = structlog.get_logger("msgr_bridge.outbound")

AUDITED = {"send": "message.send", "edit": "message.edit", "delete": "message.delete"}
POLICED = {"send", "edit"}
SHORT_BATCH = 8
"""Requests a transaction may hold to run on the event loop's own thread (``Database.transact(short=)``);
a larger batch (many concurrent requests) goes to the writer's thread."""


@dataclass(frozen=True, slots=True)
class Submission:
    """What ``submit_with_outcome`` did: the entry, whether it is new, and the policy outcome (None when
    the request was a repeat, or an action policy does not look at)."""

    entry: OutboxEntry
    created: bool
    policy: PolicyOutcome | None = None


class OutboundService:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        impersonation: Impersonation,
        policy: PolicyEngine | None = None,
        *,
        wake: Wake | None = None,
        holds: ConversationHolds | None = None,
        flags: FeatureFlags | None = None,
        metrics: m.Metrics | None = None,
    ) -> None:
        self.db = db
        self.flags = flags or FeatureFlags({})
        self.metrics = metrics
        self.holds = holds
        """The delivery worker's held conversations: a new entry of one is due when its hold ends."""
        self.impersonation = impersonation
        self.policy = policy or PolicyEngine()
        self.wake = wake
        self.outbox = OutboxRepo(db)
        self.ops = OutboxOps(db)
        self.messages = MessageRepo(db)
        self.statuses = StatusPublisher(db, bus)
        self._batcher = SubmitBatcher(self.submit_each)

    async def submit(self, request: OutboundRequest) -> OutboxEntry:
        """Accept ``request`` (see the module docstring); returns its outbox entry (``failed`` with the
        reason when policy denied or held it)."""
        return (await self.submit_with_outcome(request)).entry

    async def submit_with_outcome(self, request: OutboundRequest) -> Submission:
        """``submit``, also telling whether the entry is new and what the policy decided.

        Concurrent calls are group-committed: they share one transaction (see ``batcher.py``), and one
        request's refusal never affects another's. While tracing is on, the request carries the caller's
        trace into its outbox row."""
        if tracing.enabled() and request.trace is None:
            request = request.model_copy(update={"trace": tracing.carrier()})
        return await self._batcher.submit(request)

    async def submit_each(self, requests: Sequence[OutboundRequest]) -> list[Submission | Exception]:
        """Accept several independent requests in one transaction: each gets its ``Submission`` or the
        error that refused it (impersonation, capabilities, a reused idempotency key). A database failure
        refuses them all."""
        known = await self._known_keys(requests)
        outcomes: list[_Prepared | Exception] = []
        for r in requests:
            try:
                outcomes.append(await self._prepare(r, known))
            except Exception as exc:  # refused: reported to that request only
                outcomes.append(exc)
        prepared = [p for p in outcomes if isinstance(p, _Prepared)]
        try:
            submissions = await self._commit(prepared)
        except Exception as exc:
            return [exc] * len(requests)
        results = iter(submissions)
        return [o if isinstance(o, Exception) else next(results) for o in outcomes]

    async def submit_many(self, requests: Sequence[OutboundRequest]) -> list[Submission]:
        """Accept several requests in ONE transaction (the API's batch endpoint, benchmarks). All or
        nothing: a request that is refused (impersonation, capabilities, malformed) raises before any
        row is written. Returns one ``Submission`` per request, in order."""
        return await self._commit([await self._prepare(r) for r in requests])

    async def _commit(self, prepared: list[_Prepared]) -> list[Submission]:
        fresh = [p for p in prepared if p.existing is None]
        if fresh:
            started, start_ns = time.perf_counter(), time.time_ns() if tracing.enabled() else 0
            not_before = self._not_before(fresh)
            await self.db.transact(
                lambda conn: self._store_in(conn, fresh, not_before), short=len(fresh) <= SHORT_BATCH
            )
            if self.metrics is not None:
                seconds = time.perf_counter() - started
                self.metrics.observe(m.STAGE_SECONDS, seconds, direction="out", stage="outbox")
            if start_ns:
                for p in fresh:
                    tracing.record_span(
                        "outbound.outbox",
                        p.request.trace,
                        start_ns,
                        time.time_ns(),
                        attributes={
                            "msgr.outbox_id": p.entry.id if p.entry else "",
                            "msgr.batch_size": len(fresh),
                        },
                        error=p.reason,
                    )
            for (tenant, network), statuses in _grouped(fresh).items():
                await self.statuses.publish(tenant, network, statuses)
            if self.wake is not None:
                self._wake_worker([p.entry for p in fresh if p.created and not p.refused and p.entry])
        out = []
        for p in prepared:
            entry = p.existing or p.entry
            assert entry is not None
            out.append(Submission(entry, p.created, p.outcome if p.created else None))
        return out

    def _wake_worker(self, entries: list[OutboxEntry]) -> None:
        """Tell the delivery worker when the new entries are due: now (it claims them), or later (a held
        conversation's, when the hold ends; a scheduled send, at its time), so it need not look."""
        assert self.wake is not None
        now = utcnow()
        due = [e for e in entries if e.next_attempt_at <= now and e.state is OutboxState.QUEUED]
        if due:
            self.wake(lanes={(e.account_id, e.conversation_id) for e in due})
        later = [e for e in entries if e.next_attempt_at > now]
        for scheduled in (False, True):
            times = [e.next_attempt_at for e in later if (e.state is OutboxState.SCHEDULED) is scheduled]
            if times:
                self.wake(min(times), scheduled=scheduled)

    async def _known_keys(self, requests: Sequence[OutboundRequest]) -> dict[tuple[str, str], OutboxEntry]:
        """Entries already holding the requests' idempotency keys, looked up in one query per tenant."""
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for r in requests:
            if r.idempotency_key is not None:
                by_tenant[r.tenant].append(r.idempotency_key)
        known: dict[tuple[str, str], OutboxEntry] = {}
        if by_tenant:
            async with self.db.session() as s:
                for tenant, keys in by_tenant.items():
                    for key, entry in (await self.ops.by_keys(s, tenant, keys)).items():
                        known[(tenant, key)] = entry
        return known

    async def _prepare(
        self, request: OutboundRequest, known: dict[tuple[str, str], OutboxEntry] | None = None
    ) -> _Prepared:
        if request.action == "typing":
            raise OutboundRejected(
                "typing notifications are not queued", hint="call OutboundService.send_typing instead"
            )
        with tracing.span("outbound.impersonation", request.trace):
            speaker = await self.impersonation.resolve(request.tenant, request.user, request.account_id)
        network = speaker.account.network
        if request.idempotency_key is not None:
            if known is None:
                existing = await self._existing(request)
            else:
                existing = known.get((request.tenant, request.idempotency_key))
                if existing is not None:
                    self._same_or_refuse(request, existing)
            if existing is not None:
                return _Prepared(request, network, existing.txn_id, existing=existing)
        if request.send_at is not None:
            check_send_at(request.send_at)
        await self._check(request, speaker)
        p = _Prepared(request, network, f"mb-{uuid.uuid4().hex}")
        if request.action in POLICED:
            message = request.message(p.txn_id)
            with tracing.span("outbound.policy", request.trace) as span:
                p.outcome = await self._evaluate(request, network, message)
                if span is not None:
                    span.set_attribute("msgr.policy", p.outcome.action.value)
            content = p.outcome.request.message
            if content is not message:  # a rule redacted it: store what the rules left, never the original
                p.stored = request.model_copy(
                    update={
                        "text": content.text,
                        "formatted": content.formatted,
                        "attachments": content.attachments,
                    }
                )
        return p

    async def _evaluate(
        self, request: OutboundRequest, network: str, message: OutboundMessage
    ) -> PolicyOutcome:
        return await self.policy.evaluate(
            PolicyRequest(
                tenant=request.tenant,
                user=request.user or f"tenant:{request.tenant}",
                account_id=request.account_id,
                network=network,
                conversation_id=request.conversation_id,
                message=message,
            )
        )

    def _store_in(
        self, conn: Connection, fresh: list[_Prepared], not_before: dict[int, datetime | None] | None
    ) -> None:
        """The accepted requests' rows, audit records and statuses: one transaction's work (on SQLite, on
        the writer's thread), so it touches nothing but ``conn`` and the requests."""
        entries = create_many_in(
            conn,
            [(p.request, p.stored.payload() if p.stored else p.request.payload(), p.txn_id) for p in fresh],
            not_before=(lambda r: not_before.get(id(r))) if not_before is not None else None,
        )
        for p, entry in zip(fresh, entries, strict=True):
            if entry is None:  # a concurrent request (or an earlier one in this batch) took the key
                assert p.request.idempotency_key is not None
                p.existing = by_key_in(conn, p.request.tenant, p.request.idempotency_key)
                assert p.existing is not None
                self._same_or_refuse(p.request, p.existing)
                continue
            p.created = True
            if p.refused and p.outcome is not None:
                reason = p.outcome.reason
                if p.outcome.action is PolicyAction.HOLD:
                    reason = f"held for confirmation: {reason}"
                fail_new_in(conn, entry.id, reason)
                entry = replace(entry, state=OutboxState.FAILED, last_error=reason)
                p.reason = reason
            p.entry = entry
        created = [p for p in fresh if p.created]
        _audit_in(conn, created)
        by_tenant: dict[str, list[DeliveryStatus]] = defaultdict(list)
        for p in created:
            assert p.entry is not None
            state = DeliveryState.FAILED if p.refused else DeliveryState(p.entry.state.value)
            p.status = self.statuses.status(p.entry, state, p.reason)
            by_tenant[p.request.tenant].append(p.status)
        for tenant, statuses in by_tenant.items():
            self.statuses.store_in(conn, tenant, statuses)

    def _not_before(self, fresh: list[_Prepared]) -> dict[int, datetime | None] | None:
        """When each request's conversation hold ends (read here, on the event loop, not in the body)."""
        holds = self.holds
        if holds is None or not len(holds):
            return None
        return {id(p.request): holds.until(p.request.account_id, p.request.conversation_id) for p in fresh}

    async def report_status(self, outbox_id: str, state: DeliveryState) -> OutboxEntry | None:
        """A later delivery report for a sent entry (``delivered`` or ``read``: the inbound side calls
        this when a receipt covers one of our messages). Stored, logged and published; None when it would
        not move the entry forward (already read, or not sent)."""
        target = {DeliveryState.DELIVERED: OutboxState.DELIVERED, DeliveryState.READ: OutboxState.READ}
        if state not in target:
            raise OutboundRejected(f"report_status takes delivered or read, not {state.value}")
        async with self.db.session() as s:
            entry = await self.outbox.mark_status(outbox_id, target[state], session=s)
            if entry is None:
                return None
            status = self.statuses.status(entry, state)
            await self.statuses.store(s, entry.tenant, [status])
        account = await self.impersonation.account(entry.account_id)
        if account is not None:
            await self.statuses.publish(entry.tenant, account.network, [status])
        return entry

    async def send_typing(self, request: OutboundRequest) -> bool:
        """Send a typing notification now. False (nothing sent) when the account is not connected; typing
        is ephemeral, so it is never queued."""
        speaker = await self.impersonation.resolve(request.tenant, request.user, request.account_id)
        await self._check(request.model_copy(update={"action": "typing"}), speaker)
        if not speaker.ready or speaker.connector is None:
            return False
        await speaker.connector.set_typing(request.conversation_id, request.active)
        return True

    async def _existing(self, request: OutboundRequest) -> OutboxEntry | None:
        assert request.idempotency_key is not None
        async with self.db.session() as s:
            found = await self.ops.by_key(s, request.tenant, request.idempotency_key)
        if found is not None:
            self._same_or_refuse(request, found)
        return found

    @staticmethod
    def _same_or_refuse(request: OutboundRequest, entry: OutboxEntry) -> None:
        if not request.same_request(entry):
            raise OutboundRejected(
                f"idempotency key {request.idempotency_key!r} was already used for another request "
                f"(outbox entry {entry.id})",
                hint="use a new idempotency key for each distinct message",
            )

    async def _check(self, request: OutboundRequest, speaker: Speaker) -> None:
        if self.flags.rules:  # on every send: no work at all when no flag is configured
            self.flags.check_capabilities(
                speaker.account.network, _capabilities_used(request), request.tenant, request.user
            )
        caps = speaker.capabilities(request.conversation_id)
        if caps is None:
            return  # not known until the account connects: the delivery worker checks then
        age = None
        if (
            request.action in ("edit", "delete")
            and request.target_id
            and (caps.edit_max_age_s is not None or caps.delete_max_age_s is not None)
        ):
            target = await self.messages.get_by_remote(
                speaker.account.network, request.conversation_id, request.target_id
            )
            if target is not None:
                age = (utcnow() - target.sent_at) / timedelta(seconds=1)
        check_capabilities(request, caps, speaker.account.network, age)


def _capabilities_used(request: OutboundRequest) -> list[str]:
    used = [ACTION_CAPABILITIES[request.action]]
    if request.action == "send":
        used += [name for name, present in (
            ("replies", request.reply_to), ("threads", request.thread_id),
            ("attachments", request.attachments), ("formatted_text", request.formatted),
        ) if present]  # fmt: skip
    return used


@dataclass(slots=True)
class _Prepared:
    request: OutboundRequest
    network: str
    txn_id: str
    outcome: PolicyOutcome | None = None
    stored: OutboundRequest | None = None
    """The request as it is stored (after redactions)."""
    existing: OutboxEntry | None = None
    entry: OutboxEntry | None = None
    created: bool = False
    reason: str | None = None
    status: DeliveryStatus | None = None

    @property
    def refused(self) -> bool:
        return self.outcome is not None and not self.outcome.allowed


def _grouped(prepared: list[_Prepared]) -> dict[tuple[str, str], list[DeliveryStatus]]:
    out: dict[tuple[str, str], list[DeliveryStatus]] = defaultdict(list)
    for p in prepared:
        if p.status is not None:
            out[(p.request.tenant, p.network)].append(p.status)
    return out


def _audit_in(conn: Connection, created: list[_Prepared]) -> None:
    """Policy decisions other than allow: one audit row each. Impersonated sends, edits and deletes: one
    row per (actor, action) and transaction, listing every entry (a batch is one audited act)."""
    acts: dict[tuple[str, str], list[_Prepared]] = defaultdict(list)
    for p in created:
        assert p.entry is not None
        request, entry = p.request, p.entry
        actor = f"user:{request.user}" if request.user else f"tenant:{request.tenant}"
        where = {"account_id": entry.account_id, "conversation_id": entry.conversation_id}
        if p.outcome is not None and p.outcome.action is not PolicyAction.ALLOW:
            decisions = [d.audit_details() for d in p.outcome.decisions]
            action = f"policy.{p.outcome.action.value}"
            audit.append_in(conn, actor, action, f"outbox:{entry.id}", {**where, "decisions": decisions})
        if request.action in AUDITED and entry.state is not OutboxState.FAILED:
            acts[(actor, AUDITED[request.action])].append(p)
    for (actor, action), items in acts.items():
        entries = [p.entry for p in items if p.entry is not None]
        target = f"outbox:{entries[0].id}" if len(entries) == 1 else f"outbox:{len(entries)} entries"
        details = {
            "entries": [
                {
                    "outbox_id": e.id,
                    "account_id": e.account_id,
                    "conversation_id": e.conversation_id,
                    "txn_id": e.txn_id,
                }
                for e in entries
            ]
        }
        audit.append_in(conn, actor, action, target, details)
