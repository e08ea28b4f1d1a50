"""The inbound pipeline runner: bus -> normalize -> dedupe -> persist (group commit) -> ack -> notify.

``run`` consumes ``{tenant}.*.inbound`` from the bus and takes whatever is queued (up to ``max_batch``) as
one batch: every payload is normalized (failures quarantined), messages already seen by the same account
are skipped through the dedupe cache, and the rest is persisted in ONE transaction (group commit). Only
after the commit are the connectors' acks called and the stored events published for API subscribers, so
a crash before the commit loses nothing the platform considers delivered. The next batch is prepared while
the current one commits (``handoff``: one batch in flight, commits and announcements in order).

An edit, delete, reaction or receipt whose target is not stored yet is held (``HeldEvents``) and applied
when the target arrives; what expires or overflows the hold is quarantined with the reason.

**A refused event never stalls the pipeline.** When a batch fails, the store is asked whether the database
answers at all (``reachable``). Not answering is an outage: the batch is retried with backoff, and the
connectors wait on ``sink.push`` (backpressure, nothing dropped). Answering means the database refused
something in the batch (a NUL character in text on PostgreSQL, a lone surrogate, an oversized key): the
batch is split in halves, each stored on its own, until the refused event stands alone; that one is tried
once more and then quarantined with the database's reason (its raw payload, with NULs and lone surrogates
escaped so the quarantine row itself is storable), and the rest of the batch is stored.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

import anyio
import structlog
from anyio.abc import TaskStatus

from ..backoff import Backoff
from ..bus import Bus, Subscription
from ..errors import DatabaseError
from ..observability import metrics as m
from ..observability import tracing
from ..schema import Delete, Edit, Event, Message, MessageReceipt, Reaction, ReadReceipt, Typing
from ..store.outage import is_outage
from .dedupe import DedupeCache, message_key
from .early_changes import Held, HeldEvents, TargetKey
from .handoff import Handoff, PreparedBatch
from .normalize import Converter, Quarantined, normalize, quarantine_payload, storable_text
from .records import InboundStats, InboundStore, Notifier, Stored
from .sink import RawInbound
from .spans import batch_stages, deduped, normalized

log = structlog.get_logger("msgr_bridge.inbound")


def target_key(e: Event) -> TargetKey | None:
    if isinstance(e, Edit | Delete | Reaction | MessageReceipt):
        return (e.network, e.conversation_id, e.target_id)
    if isinstance(e, ReadReceipt):
        return (e.network, e.conversation_id, e.up_to_id)
    return None


class InboundPipeline:
    def __init__(
        self,
        *,
        bus: Bus,
        tenant: str,
        converters: Mapping[str, Converter],
        store: InboundStore,
        notifier: Notifier,
        max_batch: int = 512,
        dedupe: DedupeCache | None = None,
        held: HeldEvents | None = None,
        record_latency: bool = False,
        metrics: m.Metrics | None = None,
    ) -> None:
        self.bus = bus
        self.tenant = tenant
        self.converters = converters
        self.store = store
        self.notifier = notifier
        self.max_batch = max_batch
        self.dedupe = dedupe if dedupe is not None else DedupeCache()
        self.held = held if held is not None else HeldEvents()
        self.stats = InboundStats()
        self.record_latency = record_latency
        self.metrics = metrics
        self.last_live: dict[str, float] = {}
        """Account id -> when (``time.monotonic()``) its last live payload arrived (the ``quiet`` alert)."""
        self._created: Counter[str] = Counter()
        self._retry = Backoff(base_s=0.2, cap_s=10.0)
        self._evicted: list[Held] = []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive and prepare batches while the previous one commits (``handoff``), until the bus closes
        and every batch taken from it is committed."""
        pattern = f"{self.tenant}.*.inbound"
        handoff = Handoff(self.max_batch)
        async with self.bus.subscribe(pattern, name="inbound-pipeline", maxsize=4 * self.max_batch) as sub:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._commit_all, handoff)
                    task_status.started()
                    await self._receive_all(sub, handoff)
            except BaseExceptionGroup as group:  # the one error of a stage, as it was raised
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise

    async def _receive_all(self, sub: Subscription, handoff: Handoff) -> None:
        try:
            while True:
                await handoff.wait_for_room()
                if not (envelopes := await sub.receive_batch(handoff.room())):
                    return  # the bus was drained and our queue is empty
                batch = handoff.filling()
                if batch.release is None:  # the bus's drain waits until it is committed
                    batch.release = sub.hold()
                self._prepare(batch, [env.message for env in envelopes])
                del batch
                handoff.offer()
                del envelopes  # not held while waiting: a burst's last batch would stay in memory
        finally:
            handoff.close()

    async def _commit_all(self, handoff: Handoff) -> None:
        while (batch := await handoff.take()) is not None:
            try:
                await self._commit(batch)
            finally:
                if batch.release is not None:
                    batch.release()
            del batch  # not held while waiting for the next

    async def process(self, items: Sequence[RawInbound]) -> list[Stored]:
        """Normalize, dedupe, persist, ack and notify one batch; returns what persisting did."""
        batch = PreparedBatch()
        self._prepare(batch, items)
        return await self._commit(batch)

    def _prepare(self, batch: PreparedBatch, items: Sequence[RawInbound]) -> None:
        """Normalize and dedupe ``items`` into ``batch`` (no awaiting: the committer never sees half)."""
        traced = tracing.enabled()
        t0 = time.perf_counter()
        if traced and not batch.started_ns:
            batch.started_ns = time.time_ns()
        self.stats.received += len(items)
        batch.items.extend(items)
        events, ephemeral, quarantined = batch.events, batch.ephemeral, batch.quarantined
        for item in items:
            convert = self.converters.get(item.account.network)
            parent = tracing.context_of(item.trace) if traced else None
            result = normalized(item, convert, parent) if traced else normalize(item, convert)
            if isinstance(result, Quarantined):
                log.warning(
                    "inbound.quarantined",
                    network=result.network,
                    account=result.account_id,
                    error=result.error,
                )
                quarantined.append(result)
                continue
            for event in result:
                self.stats.events += 1
                batch.origin[id(event)] = item
                if isinstance(event, Typing):
                    ephemeral.append(event)
                elif isinstance(event, Message):
                    dedupe_ns = time.time_ns() if traced else 0
                    duplicate = self.dedupe.seen(event.account_id, message_key(event))
                    if traced:
                        deduped(parent, duplicate, dedupe_ns)
                    if duplicate:
                        self.stats.duplicates += 1
                    else:
                        events.append(event)
                else:
                    events.append(event)
        quarantined.extend(self._expired_holds())
        batch.prepare_s += time.perf_counter() - t0

    async def _commit(self, batch: PreparedBatch) -> list[Stored]:
        """Persist ``batch`` in one transaction, then call its acks and announce what it stored."""
        traced = tracing.enabled()
        self.stats.batches += 1
        items, quarantined, origin = batch.items, batch.quarantined, batch.origin
        t1, t1_ns = time.perf_counter(), time.time_ns() if traced else 0
        stored = await self._persist(batch.events, quarantined, origin)
        stored.extend(await self._apply_released(stored, origin))
        if traced:
            stored = [replace(s, trace=self._trace_of(s.event, origin)) for s in stored]
        for item in items:
            if item.ack is not None:
                try:
                    await item.ack()
                except Exception as exc:  # the data is committed; a failed ack only means a redelivery
                    log.warning("inbound.ack_failed", account=item.account.id, error=str(exc))
                    self._error("ack_failed")
        t2, t2_ns = time.perf_counter(), time.time_ns() if traced else 0
        await self.notifier.notify(self.tenant, stored, batch.ephemeral)
        t3 = time.perf_counter()
        if traced:
            stages = [("inbound.persist", t1_ns, t2_ns), ("inbound.notify", t2_ns, time.time_ns())]
            batch_stages(items, batch.started_ns, stages)
        self._measure(items, quarantined, batch.prepare_s, t2 - t1, t3 - t2)
        if self.record_latency:
            now = time.perf_counter_ns()
            self.stats.latencies_ns.extend(now - i.received_ns for i in items if i.source == "live")
        return stored

    @staticmethod
    def _trace_of(event: Event, origin: Mapping[int, RawInbound]) -> tracing.Carrier | None:
        item = origin.get(id(event))
        return item.trace if item is not None else None

    def _measure(
        self, items: Sequence[RawInbound], quarantined: Sequence[Quarantined], *stage_s: float
    ) -> None:
        """Per batch: stage latencies, messages in per network, quarantined payloads, last live arrival."""
        now = time.monotonic()
        for item in items:
            if item.source == "live":
                self.last_live[item.account.id] = now
        metrics, created = self.metrics, self._created
        if metrics is None:
            created.clear()
            return
        for stage, seconds in zip(("normalize", "persist", "notify"), stage_s, strict=True):
            metrics.observe(m.STAGE_SECONDS, seconds, direction="in", stage=stage)
        for network, n in created.items():
            metrics.add(m.MESSAGES_IN, n, network=network)
        created.clear()
        for q in quarantined:
            metrics.add(m.QUARANTINED, network=q.network)
            metrics.add(m.ERRORS, category="quarantined")

    def _error(self, category: str) -> None:
        if self.metrics is not None:
            self.metrics.add(m.ERRORS, category=category)

    async def _persist(
        self, events: Sequence[Event], quarantined: Sequence[Quarantined], origin: Mapping[int, RawInbound]
    ) -> list[Stored]:
        stored = await self._store(events, quarantined, origin)
        for s in stored:
            self._count(s)
        return stored

    async def _store(
        self,
        events: Sequence[Event],
        quarantined: Sequence[Quarantined],
        origin: Mapping[int, RawInbound],
        *,
        refusals: int = 0,
    ) -> list[Stored]:
        """One transaction. A database outage delays it (backpressure), never drops it; a refusal by a
        database that answers splits it until the refused event is quarantined (module docstring)."""
        attempt = 0
        while True:
            try:
                stored = await self.store.persist(self.tenant, events, quarantined)
            except Exception as exc:
                if not (isinstance(exc, DatabaseError) or is_outage(exc)):
                    raise  # a bug, not the database: let the pipeline's supervisor see it
                if await self.store.reachable():
                    return await self._split(events, quarantined, origin, exc, refusals)
                delay = self._retry.delay(attempt)
                attempt += 1
                self.stats.persist_retries += 1
                self._error("persist_retry")
                log.error(
                    "inbound.persist_failed", error=str(exc), retry_in_s=round(delay, 2), attempt=attempt
                )
                await anyio.sleep(delay)
            else:
                self.stats.quarantined += len(quarantined)
                return stored

    async def _split(
        self,
        events: Sequence[Event],
        quarantined: Sequence[Quarantined],
        origin: Mapping[int, RawInbound],
        exc: Exception,
        refusals: int,
    ) -> list[Stored]:
        if len(events) + len(quarantined) > 1:
            if len(events) > 1:
                half = len(events) // 2
                parts = [(events[:half], []), (events[half:], quarantined)]
            elif events:
                parts = [(events, []), ([], quarantined)]
            else:
                half = len(quarantined) // 2
                parts = [([], quarantined[:half]), ([], quarantined[half:])]
            out: list[Stored] = []
            for part_events, part_quarantined in parts:
                out.extend(await self._store(part_events, part_quarantined, origin))
            return out
        if refusals == 0:  # alone and refused once: once more, in case the refusal was not about it
            return await self._store(events, quarantined, origin, refusals=1)
        reason = storable_text(
            f"the database refused it: {exc.message if isinstance(exc, DatabaseError) else exc}"
        )
        if events:
            event = events[0]
            self.stats.refused += 1
            self._error("db_refused")
            if self.metrics is not None:
                self.metrics.add(m.QUARANTINED, network=event.network)
            raw = origin.get(id(event))
            payload = raw.payload if raw is not None else event.model_dump(mode="json")
            log.warning("inbound.refused", network=event.network, account=event.account_id, error=reason)
            record = Quarantined(event.network, event.account_id, reason, quarantine_payload(payload))
            return await self._store([], [record], origin)
        (record,) = quarantined
        if refusals == 1:  # the quarantine record itself: keep the reasons, drop the payload
            bare = Quarantined(record.network, record.account_id, record.error, {"payload_refused": reason})
            return await self._store([], [bare], origin, refusals=2)
        log.error("inbound.unstorable", network=record.network, account=record.account_id, error=reason)
        return []

    def _count(self, s: Stored) -> None:
        event = s.event
        if isinstance(event, Message):
            self.dedupe.add(event.account_id, message_key(event))
        match s.outcome:
            case "created":
                self.stats.created += 1
                if isinstance(event, Message):
                    self._created[event.network] += 1
            case "linked":
                self.stats.linked += 1
            case "duplicate":
                self.stats.duplicates += 1
            case "applied":
                self.stats.applied += 1
            case "stale":
                self.stats.stale += 1
            case "missing_target":
                key = target_key(event)
                if key is not None:
                    self.stats.held += 1
                    for evicted in self.held.hold(key, event):
                        self._evicted.append(evicted)

    async def _apply_released(
        self, stored: Sequence[Stored], origin: Mapping[int, RawInbound]
    ) -> list[Stored]:
        """Held events whose target has just been stored, applied in a follow-up transaction."""
        released: list[Event] = []
        for s in stored:
            if isinstance(s.event, Message) and s.outcome == "created":
                released.extend(
                    self.held.release((s.event.network, s.event.conversation_id, s.event.remote_id))
                )
        if not released:
            return []
        self.stats.held -= len(released)
        return await self._persist(released, [], origin)

    def _expired_holds(self) -> list[Quarantined]:
        expired = self.held.expire() + self._evicted
        self._evicted = []
        self.stats.held -= len(expired)
        return [
            Quarantined(
                h.event.network,
                h.event.account_id,
                f"{h.event.kind} target {target_key(h.event)} never arrived "
                f"(held up to {self.held.ttl_s:.0f}s)",
                quarantine_payload(h.event.model_dump(mode="json")),
            )
            for h in expired
        ]
