"""Delivery: outbox -> rate limit -> connector -> delivery status, retried, ordered and crash safe.

``DeliveryWorker.run()`` loops: claim a batch of due entries, deliver them, store every outcome of the batch
in ONE transaction, publish the statuses, and sleep until the next entry is due (or ``wake()``).

**The sent-marker comes first.** ``OutboxRepo.claim_due`` commits the move to ``sending`` and an open
``delivery_attempts`` row *before* the worker calls any connector, and every call carries the entry's
``txn_id``. So after a ``kill -9`` at any point an accepted entry is either still ``queued`` (never sent),
``sent`` (done), or ``sending``: possibly sent, the outcome unknown.

**Recovery of ``sending`` entries** (``recover()``, run at start; with ``recover_after_s > 0`` also
periodically, for several worker processes). Entries found ``sending`` are queued again with the same
``txn_id`` and their attempt closed as ``interrupted``. Before one of them is sent again:

* a connector whose network drops a second send with the same transaction id (``dedupes_txn_id = True``
  on the connector class, e.g. Matrix's ``PUT /send/{txnId}``) simply resends: the platform shows one;
* for every other network the resend waits ``echo_grace_s`` (time for the account to reconnect and catch
  up, which brings back the echo of a send that did reach the platform), and then the worker looks for a
  stored message carrying that ``txn_id`` (the inbound pipeline stores our own echoes with it). Found: the
  first send did arrive, the entry is marked ``sent`` with the echo's remote id and nothing is resent.
  Not found: the first send did not arrive (or the platform never echoes), and the entry is sent.

The only window left is a platform that neither dedupes nor echoes our own sends, where "sent but not
recorded" cannot be told from "never sent"; the worker then prefers sending again (at least once) over
losing the message, and says so in the ``outbound.recovered`` log event.

**Retries.** ``TransientError`` (and anything unexpected) is retried with exponential backoff and jitter
(``backoff.Backoff``) up to ``[outbound] max_attempts``; then the entry is dead-lettered, an
``outbound.dead_lettered`` error is logged and counted, and ``msgr-bridge outbox retry|cancel`` lets an
operator act. ``PermanentError``, ``NotSupported`` and refused requests fail at once with their reason.
A platform's back-off (``RateLimited.retry_after``) pauses the bucket and the entry waits: it does not
count as an attempt, and nothing is ever dropped for a rate limit. Neither do a local rate-limit wait nor
an account that is not connected (or whose credentials were refused): those entries wait as well.

**Order per conversation.** Entries of one (account, conversation) are sent one after another in creation
order. An entry is not sent while an older one of its conversation is waiting for a retry or in flight;
it waits until then (without using an attempt). Conversations are delivered concurrently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import anyio
import structlog
from anyio.abc import TaskStatus
from pydantic import ValidationError

from ..backoff import Backoff
from ..bus import Bus
from ..config import OutboundSection
from ..errors import (
    AuthenticationFailed,
    NotSupported,
    OutboundRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..inbound.dedupe import DedupeCache
from ..schema import SendResult
from ..store.db import Database
from ..store.repos.outbox import OutboxEntry, OutboxRepo
from ..store.types import utcnow
from .capabilities import check_capabilities
from .holds import ConversationHolds
from .impersonation import Impersonation, Speaker
from .outbox import OutboundRequest, OutboxOps
from .ratelimit import MemoryRateLimiter, RateLimiter, limit_from
from .recording import Recorder
from .statuses import StatusPublisher

log = structlog.get_logger("msgr_bridge.outbound")

Kind = Literal["sent", "retry", "release", "failed", "dead"]


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    max_attempts: int = 10
    base_backoff_s: float = 1.0
    max_backoff_s: float = 600.0
    batch_size: int = 200
    concurrency: int = 64
    """Conversations delivered at the same time."""
    poll_interval_s: float = 1.0
    """Longest idle sleep (a ``wake()`` or the next due entry ends it sooner)."""
    send_timeout_s: float = 60.0
    """A connector call that takes longer counts as a transient failure."""
    recover_after_s: float = 0.0
    """``sending`` entries older than this are recovered. 0: all of them, once, at start (one worker
    process). With several worker processes, set it above ``send_timeout_s``: recovery then runs
    periodically and never takes an entry another live worker is sending."""
    echo_grace_s: float = 10.0
    """How long a recovered send waits for its echo before it is sent again (non-deduping networks)."""
    wait_retry_s: float = 2.0
    """How soon an entry waiting for its account to connect is looked at again."""
    inline_wait_max_s: float = 1.0
    """Rate-limit waits up to this long are slept through; longer ones put the entry back in the queue."""

    @classmethod
    def from_config(cls, section: OutboundSection, **overrides: float) -> DeliverySettings:
        return cls(
            max_attempts=section.max_attempts,
            base_backoff_s=float(section.base_backoff_s),
            max_backoff_s=float(section.max_backoff_s),
            **overrides,  # type: ignore[arg-type]
        )


@dataclass
class DeliveryStats:
    """Counters (for metrics and /health)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    rate_limited: int = 0
    waited: int = 0
    failed: int = 0
    dead_lettered: int = 0
    recovered: int = 0
    echo_matched: int = 0


@dataclass(slots=True)
class Result:
    """What happened to one claimed entry; applied with the rest of its batch in one transaction."""

    entry: OutboxEntry
    kind: Kind
    network: str = ""
    error: str | None = None
    until: datetime | None = None
    outcome: str | None = None
    """For ``release``: the attempt row's outcome (None: nothing was tried, the row is removed)."""
    result: SendResult | None = None
    request: OutboundRequest | None = None
    speaker: Speaker | None = None
    echo: bool = False
    """Sent according to a stored echo (after a crash): nothing new to store."""


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
    ) -> None:
        self.db = db
        self.impersonation = impersonation
        self.limiter = limiter or MemoryRateLimiter()
        self.settings = settings or DeliverySettings()
        self.outbox = OutboxRepo(db)
        self.ops = OutboxOps(db)
        self.statuses = StatusPublisher(db, bus)
        self.recorder = Recorder(db, self.statuses, dedupe)
        self.holds = holds if holds is not None else ConversationHolds()
        """Conversations waiting behind an entry (shared with ``OutboundService``: see ``holds.py``)."""
        self.backoff = Backoff(base_s=self.settings.base_backoff_s, cap_s=self.settings.max_backoff_s)
        self.stats = DeliveryStats()
        self._wakeup = anyio.Event()
        self._last_recovery = 0.0

    def wake(self) -> None:
        """New work was queued (``OutboundService(wake=worker.wake)``): stop idling."""
        self._wakeup.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover, then deliver until cancelled. Cancellation is clean: a batch is either committed or
        its entries stay ``sending`` and are recovered on the next start."""
        with anyio.CancelScope(shield=True):
            await self.recover()
        task_status.started()
        while True:
            every = self.settings.recover_after_s
            if every > 0 and anyio.current_time() - self._last_recovery > every:
                with anyio.CancelScope(shield=True):
                    await self.recover()
            if await self.run_once() == 0:
                await self._idle()

    async def recover(self) -> list[OutboxEntry]:
        """Queue entries found ``sending`` again (see the module docstring); recovered sends wait
        ``echo_grace_s`` for their echo."""
        self._last_recovery = anyio.current_time()
        now = utcnow()
        entries = await self.outbox.recover_stuck_sending(
            now - timedelta(seconds=self.settings.recover_after_s), now=now
        )
        if entries:
            sends = [e.id for e in entries if e.action.value == "send"]
            await self.ops.hold_until(sends, now + timedelta(seconds=self.settings.echo_grace_s))
            self.stats.recovered += len(entries)
            log.warning(
                "outbound.recovered",
                count=len(entries),
                ids=[e.id for e in entries[:20]],
                note="found in flight after a restart; resent with the same txn_id only when no echo "
                "of the first send is stored (or the network dedupes transaction ids)",
            )
        return entries

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many entries were claimed."""
        # Database work is shielded: a cancel (shutdown) lands between statements, never inside one, so no
        # connection is torn down mid-query. Only connector calls and sleeps are cancelled at once.
        with anyio.CancelScope(shield=True):
            claimed = await self.outbox.claim_due(limit=self.settings.batch_size)
            if not claimed:
                return 0
            self.stats.claimed += len(claimed)
            batch = await self._prepare(claimed)
        groups: dict[tuple[str, str], list[OutboxEntry]] = defaultdict(list)
        for entry in claimed:
            groups[(entry.account_id, entry.conversation_id)].append(entry)
        results: list[Result] = []
        slots = anyio.CapacityLimiter(self.settings.concurrency)

        async def conversation(entries: list[OutboxEntry]) -> None:
            async with slots:
                results.extend(await self._conversation(entries, batch))

        try:
            async with anyio.create_task_group() as tg:
                for entries in groups.values():
                    tg.start_soon(conversation, entries)
        finally:
            # Even when cancelled mid-batch, store what was delivered (shielded): no sent message stays
            # 'sending' needlessly. The rest stays 'sending' and is recovered on the next start.
            with anyio.CancelScope(shield=True):
                await self._apply(results)
        return len(claimed)

    async def _prepare(self, claimed: list[OutboxEntry]) -> _Batch:
        batch = _Batch()
        async with self.db.session() as s:
            batch.blocked = await self.ops.blocked(s, claimed)
            batch.interrupted = await self.ops.interrupted(s, [e.id for e in claimed])
            batch.echoes = await self.ops.echoes(s, [e.txn_id for e in claimed if e.id in batch.interrupted])
        return batch

    async def _conversation(self, entries: list[OutboxEntry], batch: _Batch) -> list[Result]:
        out: list[Result] = []
        hold: datetime | None = None
        for entry in entries:
            if hold is None and entry.id in batch.blocked:
                hold = batch.blocked[entry.id]
            if hold is not None:  # an older entry of this conversation waits: so does this one
                out.append(Result(entry, "release", until=hold))
                continue
            result = await self._deliver(entry, batch)
            out.append(result)
            if result.kind in ("retry", "release"):
                hold = result.until
        if hold is not None:
            self.holds.hold(entries[0].account_id, entries[0].conversation_id, hold)
        else:
            self.holds.clear(entries[0].account_id, entries[0].conversation_id)
        return out

    async def _deliver(self, entry: OutboxEntry, batch: _Batch) -> Result:
        now = utcnow()
        with anyio.CancelScope(shield=True):
            record = await self.impersonation.account(entry.account_id)
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
        while (wait := await self.limiter.acquire(key)) > 0:
            if wait > self.settings.inline_wait_max_s:
                self.stats.waited += 1
                return Result(entry, "release", network, until=utcnow() + self._s(wait))
            await anyio.sleep(wait)

        try:
            with anyio.fail_after(self.settings.send_timeout_s):
                base.result = await self._call(speaker, request, entry.txn_id)
            self.stats.sent += 1
            return base
        except RateLimited as exc:
            self.stats.rate_limited += 1
            await self.limiter.pause(key, exc.retry_after)
            until = utcnow() + self._s(exc.retry_after)
            return Result(entry, "release", network, error=_reason(exc), until=until, outcome="rate_limited")
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
            error = _reason(exc) if not isinstance(exc, TimeoutError) else "the connector timed out"
            if entry.attempts >= self.settings.max_attempts:
                return Result(entry, "dead", network, error=error)
            until = utcnow() + self._s(self.backoff.delay(entry.attempts - 1))
            return Result(entry, "retry", network, error=error, until=until)

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

    async def _apply(self, results: list[Result]) -> None:
        if not results:
            return
        published = await self.recorder.apply(results)
        for r in results:
            self._count(r)
        for (tenant, network), statuses in published.items():
            await self.statuses.publish(tenant, network, statuses)

    def _count(self, r: Result) -> None:
        if r.kind == "retry":
            self.stats.retried += 1
        elif r.kind == "failed":
            self.stats.failed += 1
        elif r.kind == "dead":
            self.stats.dead_lettered += 1
            log.error(
                "outbound.dead_lettered",
                outbox_id=r.entry.id,
                account_id=r.entry.account_id,
                conversation_id=r.entry.conversation_id,
                attempts=r.entry.attempts,
                error=r.error,
                hint="the message waits for an operator: msgr-bridge outbox retry|cancel " + r.entry.id,
            )

    async def _idle(self) -> None:
        with anyio.CancelScope(shield=True):
            due = await self.ops.next_due()
        delay = self.settings.poll_interval_s
        if due is not None:
            delay = min(delay, max(0.02, (due - utcnow()).total_seconds()))
        with anyio.move_on_after(delay):
            await self._wakeup.wait()
        self._wakeup = anyio.Event()

    @staticmethod
    def _s(seconds: float) -> timedelta:
        return timedelta(seconds=max(0.0, seconds))


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {message}"
