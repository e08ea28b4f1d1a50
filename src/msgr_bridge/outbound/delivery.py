"""Delivery: outbox -> rate limit -> connector -> delivery status, retried, ordered and crash safe.

``DeliveryWorker.run()`` loops: claim a batch of due entries and hand each conversation's entries to a
delivery task of its own (a *lane*); while lanes are busy it goes on claiming for the other conversations.
Every outcome is committed as soon as it is known (``commits.GroupCommit``, which lets conversations share
a commit), so a conversation whose network is slow holds back only itself.

**Markers come first.** ``OutboxRepo.claim_due`` commits the move to ``sending`` and an open
``delivery_attempts`` row before the worker calls any connector, and every call carries the entry's
``txn_id``. Right before the network write the attempt is marked ``on_wire`` (committed), and the result is
committed right after the write, before the conversation's next send. So after a ``kill -9`` an accepted
entry is ``queued`` (never sent), ``sent`` (done), ``sending`` without a wire marker (claimed, never
written: sent normally after the restart) or ``sending`` on the wire: possibly sent, the outcome unknown.
A conversation has at most one send on the wire at any time.

**Recovery of entries found on the wire** (``recover()``, run at start; with ``recover_after_s > 0`` also
periodically, for several worker processes). They are queued again with the same ``txn_id`` and their
attempt closed as ``interrupted``. Before one of them is sent again:

* a network that drops a second send with the same transaction id (``Capabilities.dedupes_txn_id``, e.g.
  Matrix's ``PUT /send/{txnId}``) simply gets it again: the platform shows one;
* a network that echoes our own sends (``Capabilities.echoes_own_sends``) has ``echo_grace_s`` to bring
  back the echo of a send that did reach the platform (the account reconnects and catches up); then the
  worker looks for a stored message carrying that ``txn_id``. Found: the entry is marked ``sent`` with the
  echo's remote id and nothing is resent. Not found: the first send did not arrive, and it is sent.

A network that neither echoes nor dedupes (IRC) cannot tell "sent but not recorded" from "never sent"; the
worker then prefers sending again (at least once) over losing the message, and says so in the
``outbound.recovered`` log event. Since only one send per conversation is ever on the wire, a crash
duplicates at most that one.

**Retries.** ``TransientError`` (and anything unexpected) is retried with exponential backoff and jitter
(``backoff.Backoff``) up to ``[outbound] max_attempts``; then the entry is dead-lettered. ``PermanentError``,
``NotSupported`` and refused requests fail at once with their reason. A platform's back-off
(``RateLimited.retry_after``) pauses the bucket and the entry waits without using an attempt, but not
forever: when the network asks for a wait longer than ``[outbound] max_rate_limit_wait_s``, when the waits
of one entry add up to more than that, or when it refuses the entry ``max_identical_rate_limits`` times in
a row with the same error, the entry is dead-lettered and its conversation moves on. Every dead letter logs
an ``alert`` event (error level) naming the entry, the conversation and the reason; ``msgr-bridge outbox
retry|cancel`` lets an operator act. A local rate-limit wait and an account that is not connected (or whose
credentials were refused) only wait.

**Order per conversation.** Entries of one (account, conversation) are sent one after another in creation
order. An entry is not sent while an older one of its conversation is waiting for a retry or in flight;
it waits until then (without using an attempt). Conversations are delivered concurrently.

**Database outages** (``store.outage.OutageGuard``): every database step of the loop and of the lanes is
retried with backoff until the database answers again; one ``database.unavailable`` error is logged per
outage, and ``/ready`` answers false meanwhile. Nothing is dropped or sent twice because of an outage.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from ..backoff import Backoff
from ..bus import Bus
from ..errors import (
    AuthenticationFailed,
    NotSupported,
    OutboundRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..inbound.dedupe import DedupeCache
from ..observability import metrics as m
from ..observability import tracing
from ..schema import DeliveryState, SendResult
from ..store.db import Database
from ..store.outage import OutageGuard
from ..store.repos.outbox import OutboxEntry, OutboxRepo
from ..store.types import utcnow
from .capabilities import check_capabilities
from .commits import GroupCommit
from .delivery_types import DeliverySettings, DeliveryStats, Kind, Result
from .giving_up import rate_limit_verdict
from .held_conversations import ConversationHolds
from .impersonation import Impersonation, Speaker
from .observed import count, entry_trace, rate_limit_wait, status_spans, timed
from .outbox_statements import blocked_in, echoes_in, interrupted_in
from .ratelimit import MemoryRateLimiter, RateLimiter, limit_from
from .recording import Recorder
from .requests import OutboundRequest, OutboxOps
from .scheduled import promote_due
from .statuses import StatusPublisher
from .waking import Waking

__all__ = ["DeliverySettings", "DeliveryStats", "DeliveryWorker", "Kind", "Result"]

log = structlog.get_logger("msgr_bridge.outbound")

T = TypeVar("T")
Lane = tuple[str, str]
"""(account_id, conversation_id)"""
SHUTDOWN_COMMIT_S = 5.0
"""How long a cancelled lane may still try to record what it sent (longer in an outage: recovered later)."""


@dataclass
class _Batch:
    blocked: dict[str, datetime] = field(default_factory=dict)
    interrupted: set[str] = field(default_factory=set)
    echoes: dict[str, str] = field(default_factory=dict)


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        impersonation: Impersonation,
        limiter: RateLimiter | None = None,
        settings: DeliverySettings | None = None,
        dedupe: DedupeCache | None = None,
        holds: ConversationHolds | None = None,
        metrics: m.Metrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.impersonation = impersonation
        self.limiter = limiter or MemoryRateLimiter()
        self.settings = settings or DeliverySettings()
        self.outbox = OutboxRepo(db)
        self.ops = OutboxOps(db)
        self.statuses = StatusPublisher(db, bus)
        self.recorder = Recorder(db, self.statuses, dedupe)
        self.holds = holds if holds is not None else ConversationHolds()
        """Conversations waiting behind an entry (shared with ``OutboundService``; ``held_conversations``)."""
        self.backoff = Backoff(base_s=self.settings.base_backoff_s, cap_s=self.settings.max_backoff_s)
        self.stats = DeliveryStats()
        self.guard = OutageGuard("outbound.delivery")
        self.commits = GroupCommit(self._apply, self.guard)
        self.lanes: set[Lane] = set()
        """Conversations a delivery task is working on (not claimed again until it is done)."""
        self._slots = anyio.CapacityLimiter(self.settings.concurrency)
        self.waking = Waking()
        """What is known in memory about when work is due (``waking.py``)."""
        self._last_recovery = 0.0
        self._promote_at = 0.0
        """(monotonic) When scheduled sends are looked at again at the latest; 0: at the first batch."""
        self._look_at = 0.0
        """(monotonic) When an idle worker next reads the outbox's due times (work of other processes)."""

    def wake(
        self,
        at: datetime | None = None,
        *,
        scheduled: bool = False,
        lanes: Collection[Lane] = (),
    ) -> None:
        """New work was queued (``OutboundService(wake=worker.wake)``): due now (stop idling and claim it),
        or at ``at`` (a held conversation's entry; a scheduled send with ``scheduled``). Due now in
        ``lanes`` that are all being delivered: claimed when one of them ends (a claim now would leave it
        out)."""
        if at is None and lanes and all(lane in self.lanes for lane in lanes):
            self.waking.after_lane = True
            return
        self.waking.wake(at, scheduled=scheduled, busy=bool(self.lanes))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover, then deliver until cancelled. Cancellation is clean: what was delivered is committed,
        the rest stays ``sending`` and is recovered on the next start. A database outage is waited out."""
        await self._db(self.recover, "recover")
        task_status.started()
        async with anyio.create_task_group() as lanes:
            while True:
                if self._recovery_due():
                    await self._db(self.recover, "recover")
                full = len(self.lanes) >= self.settings.concurrency
                # A batch smaller than the limit took every due entry outside the busy conversations:
                # claiming again now would find nothing, so wait for the next wake or due time instead.
                if full or await self._dispatch(lanes) < self.settings.batch_size:
                    await self._idle()

    async def run_once(self) -> int:
        """Claim and deliver one batch (to its end); returns how many entries were claimed."""
        async with anyio.create_task_group() as tg:
            claimed = await self._dispatch(tg)
        return claimed

    async def recover(self) -> list[OutboxEntry]:
        """Queue entries found ``sending`` again (see the module docstring); sends found on the wire wait
        ``echo_grace_s`` for their echo."""
        self._last_recovery = anyio.current_time()
        now = utcnow()
        entries = await self.outbox.recover_stuck_sending(
            now - timedelta(seconds=self.settings.recover_after_s), now=now
        )
        if entries:
            async with self.db.read() as s:
                on_wire = await self.ops.interrupted(s, [e.id for e in entries])
            sends = [e.id for e in entries if e.action.value == "send" and e.id in on_wire]
            grace = now + timedelta(seconds=self.settings.echo_grace_s)
            await self.ops.hold_until(sends, grace)
            self.waking.new_work = True
            if sends:
                self.waking.hint(grace)
            self.stats.recovered += len(entries)
            log.warning(
                "outbound.recovered",
                count=len(entries),
                on_wire=len(on_wire),
                ids=[e.id for e in entries[:20]],
                note="found in flight after a restart. Those never written are simply sent; those found on "
                "the wire are resent with the same txn_id unless an echo of the first send is stored or the "
                "network dedupes transaction ids (a network that does neither, e.g. IRC, may show it twice)",
            )
        return entries

    async def _db(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """A database step: shielded from cancellation while it runs, retried through an outage."""

        async def shielded() -> T:
            with anyio.CancelScope(shield=True):
                result = await step()
            return result

        return await self.guard.retry(shielded, what)

    async def _dispatch(self, tg: TaskGroup) -> int:
        """Claim a batch (leaving out conversations being delivered) and start a lane per conversation."""
        await self._promote()
        self.waking.new_work = False  # what is queued from here on wakes the worker again
        busy = set(self.lanes)
        if busy:  # their conversations' due entries are left out: claim again when a lane ends
            self.waking.after_lane = True
        started = utcnow()
        claimed, batch = await self._db(lambda: self._claim(started, busy), "claim")
        if len(claimed) < self.settings.batch_size:
            self.waking.claimed(started)
        if not claimed:
            return 0
        self.stats.claimed += len(claimed)
        groups: dict[Lane, list[OutboxEntry]] = defaultdict(list)
        for entry in claimed:
            groups[(entry.account_id, entry.conversation_id)].append(entry)
        for lane, entries in groups.items():
            self.lanes.add(lane)
            tg.start_soon(self._lane, lane, entries, batch)
        return len(claimed)

    async def _promote(self) -> None:
        """Queue the scheduled sends whose time came (``scheduled.py``): when the earliest one known is due,
        and at least once per ``idle_poll_s`` (one indexed statement that usually changes nothing)."""
        due = self.waking.scheduled_due
        if anyio.current_time() < self._promote_at and (due is None or due > utcnow()):
            return
        self._promote_at = anyio.current_time() + self.settings.idle_poll_s
        started = utcnow()
        entries = await self._db(lambda: promote_due(self.db, self.statuses, started), "promote")
        self.waking.promoted(started)  # what it queued is claimed by the batch that follows
        for e in entries:
            record = await self._db(lambda e=e: self.impersonation.account(e.account_id), "account")  # type: ignore[misc]
            if record is not None:
                status = self.statuses.status(e, DeliveryState.QUEUED, "its time came")
                await self.statuses.publish(e.tenant, record.network, [status])

    async def _lane(self, lane: Lane, entries: list[OutboxEntry], batch: _Batch) -> None:
        try:
            async with self._slots:
                await self._conversation(entries, batch)
        finally:
            self.lanes.discard(lane)
            if self.waking.after_lane:  # the conversation's newer entries may be claimed now
                self.waking.after_lane = False
                self.waking.new_work = True
            self.waking.event.set()  # and a due entry that waited for a free lane may go

    async def _claim(self, now: datetime, busy: set[Lane]) -> tuple[list[OutboxEntry], _Batch]:
        """Claim a batch and read what its delivery needs to know, in one transaction (committed before any
        connector is called)."""
        batch = _Batch()

        def claim(conn: Connection) -> list[OutboxEntry]:
            claimed = self.outbox.claim_due_in(conn, now, self.settings.batch_size, exclude=busy)
            if claimed:
                batch.blocked = blocked_in(conn, claimed)
                batch.interrupted = interrupted_in(conn, [e.id for e in claimed])
                batch.echoes = echoes_in(conn, [e.txn_id for e in claimed if e.id in batch.interrupted])
            return claimed

        return await self.db.transact(claim), batch

    async def _conversation(self, entries: list[OutboxEntry], batch: _Batch) -> None:
        hold: datetime | None = None
        held: list[OutboxEntry] = []
        # Results not committed yet: committed with the next send's wire marker (one commit per send), or
        # before any wait, or at the end; always before anything else of this conversation is written.
        carry: list[Result] = []
        try:
            for entry in entries:
                if hold is None and entry.id in batch.blocked:
                    hold = batch.blocked[entry.id]
                if hold is not None:  # an older entry of this conversation waits: so does this one
                    held.append(entry)
                    continue
                result = await self._deliver(entry, batch, carry)
                if result.kind in ("retry", "release"):
                    hold = result.until
                    assert hold is not None
                    self.holds.hold(entry.account_id, entry.conversation_id, hold)
                carry.append(result)
            if hold is not None:
                carry.extend(Result(e, "release", until=hold) for e in held)
            await self._commit(carry)
        finally:
            if carry:  # cancelled (shutdown): what was sent is recorded, so it is not sent again
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_COMMIT_S):
                    await self._commit(carry)
        if hold is not None:
            self.holds.hold(entries[0].account_id, entries[0].conversation_id, hold)
        else:
            self.holds.clear(entries[0].account_id, entries[0].conversation_id)

    async def _deliver(self, entry: OutboxEntry, batch: _Batch, carry: list[Result]) -> Result:
        if not tracing.enabled():
            return await self._deliver_one(entry, batch, carry)
        attributes = {"msgr.outbox_id": entry.id, "msgr.attempt": entry.attempts}
        with tracing.span("outbound.delivery", entry_trace(entry), attributes=attributes) as span:
            result = await self._deliver_one(entry, batch, carry)
            if span is not None:
                span.set_attribute("msgr.result", result.kind)
            return result

    async def _deliver_one(self, entry: OutboxEntry, batch: _Batch, carry: list[Result]) -> Result:
        now = utcnow()
        record = await self._db(lambda: self.impersonation.account(entry.account_id), "account")
        if record is None:
            return Result(entry, "failed", error="the account was unlinked before the message was sent")
        speaker = self.impersonation.speaker(record)
        network = record.network
        if not speaker.ready or speaker.connector is None:
            self.stats.waited += 1
            return Result(entry, "release", network, until=now + self._s(self.settings.wait_retry_s))
        try:
            request = OutboundRequest.from_entry(entry)
            caps = speaker.capabilities(entry.conversation_id)
            if caps is not None:
                check_capabilities(request, caps, network)
        except (ValidationError, NotSupported, OutboundRejected) as exc:
            return Result(entry, "failed", network, error=_reason(exc))
        base = Result(entry, "sent", network, request=request, speaker=speaker)
        if entry.id in batch.interrupted and not speaker.dedupes_txn_id and entry.txn_id in batch.echoes:
            self.stats.echo_matched += 1
            base.result, base.echo = SendResult(remote_id=batch.echoes[entry.txn_id]), True
            return base

        key = (network, entry.account_id, entry.conversation_id)
        if not self.limiter.has_limit(network):
            self.limiter.set_limit(network, limit_from(speaker.connector.capabilities))
        if caps is not None:  # the account's own pace: its settings may raise or lower the declared rate
            self.limiter.set_account_limit(network, entry.account_id, limit_from(caps))
        with tracing.span("outbound.ratelimit"):
            while (wait := await self.limiter.acquire(key)) > 0:
                rate_limit_wait(self.metrics, network, "local", wait)
                if wait > self.settings.inline_wait_max_s:
                    self.stats.waited += 1
                    return Result(entry, "release", network, until=utcnow() + self._s(wait))
                await self._commit(carry)  # a result never waits for a rate limit to be recorded
                await anyio.sleep(wait)

        # The previous send's result and this send's marker, durable before the network write: the
        # conversation has at most this one send on the wire.
        await self._commit(carry, on_wire=[entry.id])
        try:
            with timed(self.metrics, "send"), tracing.span("outbound.send"):
                with anyio.fail_after(self.settings.send_timeout_s):
                    base.result = await self._call(speaker, request, entry.txn_id)
            self.stats.sent += 1
            return base
        except RateLimited as exc:
            self.stats.rate_limited += 1
            rate_limit_wait(self.metrics, network, "platform", exc.retry_after)
            error = _reason(exc)
            earlier = await self._db(lambda: self.outbox.attempts(entry.id), "attempts")
            verdict = rate_limit_verdict(self.settings, exc.retry_after, error, earlier, utcnow())
            if verdict is not None:
                return Result(entry, "dead", network, error=verdict, outcome="rate_limited")
            await self.limiter.pause(key, exc.retry_after)
            until = utcnow() + self._s(exc.retry_after)
            return Result(entry, "release", network, error=error, until=until, outcome="rate_limited")
        except AuthenticationFailed as exc:
            until = utcnow() + self._s(self.settings.wait_retry_s)
            return Result(
                entry, "release", network, error=_reason(exc), until=until, outcome="bad_credentials"
            )
        except (PermanentError, NotSupported) as exc:
            return Result(entry, "failed", network, error=_reason(exc))
        except (TransientError, TimeoutError, Exception) as exc:
            if not isinstance(exc, TransientError | TimeoutError):
                log.exception("outbound.connector_crashed", outbox_id=entry.id, network=network)
                if self.metrics is not None:
                    self.metrics.add(m.ERRORS, category="connector_crashed")
            error = _reason(exc) if not isinstance(exc, TimeoutError) else "the connector timed out"
            if entry.attempts >= self.settings.max_attempts:
                return Result(
                    entry, "dead", network, error=f"gave up after {entry.attempts} attempts: {error}"
                )
            until = utcnow() + self._s(self.backoff.delay(entry.attempts - 1))
            return Result(entry, "retry", network, error=error, until=until)

    async def _commit(self, carry: list[Result], on_wire: list[str] | None = None) -> None:
        if carry or on_wire:
            await self.commits.commit(carry, on_wire or ())
            carry.clear()

    @staticmethod
    async def _call(speaker: Speaker, request: OutboundRequest, txn_id: str) -> SendResult | None:
        connector, conv = speaker.connector, request.conversation_id
        assert connector is not None
        match request.action:
            case "send":
                return await connector.send_message(conv, request.message(txn_id))
            case "edit":
                assert request.target_id is not None
                return await connector.edit(conv, request.target_id, request.message(txn_id))
            case "delete":
                assert request.target_id is not None
                await connector.delete(conv, request.target_id)
            case "react":
                assert request.target_id is not None and request.emoji is not None
                await connector.react(conv, request.target_id, request.emoji, request.reaction)
            case "mark_read":
                assert request.up_to_id is not None
                await connector.mark_read(conv, request.up_to_id)
            case _:
                raise PermanentError(f"{request.action} is not a queued action")
        return None

    async def _apply(self, results: list[Result], on_wire: list[str]) -> None:
        """One commit of ``GroupCommit``: results and wire markers together, then their statuses."""
        if not results and not on_wire:
            return
        start_ns = time.time_ns()
        with timed(self.metrics, "commit"):
            published = await self.recorder.apply(results, on_wire=on_wire)
        if tracing.enabled():
            status_spans(results, start_ns)
        for r in results:
            self._count(r)
            if r.until is not None:  # a retry, a back-off or a held entry: due again then
                self.waking.hint(r.until)
        for (tenant, network), statuses in published.items():
            await self.statuses.publish(tenant, network, statuses)

    def _count(self, r: Result) -> None:
        count(self.metrics, r)  # and the ``alert`` of a dead letter
        if r.kind == "retry":
            self.stats.retried += 1
        elif r.kind == "failed":
            self.stats.failed += 1
        elif r.kind == "dead":
            self.stats.dead_lettered += 1

    async def _idle(self) -> None:
        """Wait for work (``waking.py``): a wake (work queued by this process, a lane that ended) or the
        earliest due time known (a retry, a hold's end, a scheduled send). The outbox itself is read only
        every ``idle_poll_s`` (one read of its due times, ``next_due``), which finds what another process
        queued; claiming and promoting, which take the write lock, wait until something is due."""
        w = self.waking
        while True:
            if w.new_work and len(self.lanes) < self.settings.concurrency:
                return  # queued here since the claim began: claim it, no need to look first
            if anyio.current_time() >= self._look_at:
                queued, scheduled = await self._db(self.ops.next_due, "next due")
                self._look_at = anyio.current_time() + self.settings.idle_poll_s
                # Promotion looks when the earliest scheduled send is due (or every idle_poll_s at the
                # latest, should the worker stay busy that long).
                self._promote_at = self._look_at
                if queued is not None:
                    w.hint(queued)
                if scheduled is not None:
                    w.hint(scheduled, scheduled=True)
            if self._recovery_due():
                return
            due, now = w.due(), utcnow()
            if due is not None and due <= now and len(self.lanes) < self.settings.concurrency:
                return  # its time came
            # Due now while every lane is busy: a lane's end wakes the worker.
            delay = self._look_at - anyio.current_time()
            if due is not None and due > now:
                delay = min(delay, (due - now).total_seconds())
            if self.settings.recover_after_s > 0:
                delay = min(delay, self._last_recovery + self.settings.recover_after_s - anyio.current_time())
            await w.wait(max(0.001, delay))

    def _recovery_due(self) -> bool:
        every = self.settings.recover_after_s
        return every > 0 and anyio.current_time() - self._last_recovery > every

    @staticmethod
    def _s(seconds: float) -> timedelta:
        return timedelta(seconds=max(0.0, seconds))


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {message}"
