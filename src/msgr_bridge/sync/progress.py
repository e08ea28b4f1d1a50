"""Import progress in the core: what connectors report through ``ctx.progress``, kept, streamed and stored.

* ``ProgressBoard`` keeps the latest report per account and conversation in memory, bounded
  (``max_conversations`` per account, the least recently reported dropped first; ``max_accounts``), and
  decides what goes out: at most one update per conversation every ``interval_s``; a ``finished`` report
  always goes out at once; a report held back by the limit goes out when its second is up (the newest
  one then), so the last state is never lost.
* ``ProgressService`` runs the board: a report only updates memory and wakes its task (the connector never
  waits); the task publishes each update on ``{tenant}.{network}.ephemeral`` (the event stream shows it
  live, ``seq`` null, never replayed) and stores it in the account's connector state under the
  ``msgr_bridge:sync_progress`` namespace (a bounded map of the same size), which the CLI reads and the
  bridge loads back at start. A failed write is retried with the next round; it never stops publishing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ..bus import Bus, topic
from ..errors import BusClosed
from ..schema import Account, SyncPhase, SyncProgress
from ..sdk.progress import check_report
from ..store.db import Database
from ..store.repos.connector_state import ConnectorStateRepo

log = structlog.get_logger("msgr_bridge.sync.progress")

NAMESPACE = "msgr_bridge:sync_progress"
"""Where the latest progress per conversation is stored (connector state; no plugin namespace has ':')."""
INTERVAL_S = 1.0
MAX_CONVERSATIONS = 500
MAX_ACCOUNTS = 10_000
WRITE_TIMEOUT_S = 10.0
RETRY_AFTER_S = 5.0
MAX_UNWRITTEN = 10_000
"""Updates kept for the store while it is out (the newest; one per conversation)."""


@dataclass(slots=True)
class _Entry:
    latest: SyncProgress
    sent_at: float | None = None
    pending: bool = True


def as_json(p: SyncProgress) -> dict[str, Any]:
    """One conversation's progress as the API, the CLI and the store show it."""
    return {
        "conversation_id": p.conversation_id,
        "phase": p.phase.value,
        "done": p.done,
        "total": p.total,
        "finished": p.finished,
        "at": p.timestamp.isoformat(),
    }


def summary(conversations: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``sync`` field of an account: its conversations' progress and how many are still going."""
    return {
        "conversations": conversations,
        "in_progress": sum(1 for c in conversations if not c.get("finished")),
    }


def summary_line(sync: dict[str, Any]) -> str:
    """The CLI's column: ``history 2/5 conversations, 340/1000 messages`` (empty: nothing reported)."""
    convs = sync["conversations"]
    if not convs:
        return ""
    finished = sum(1 for c in convs if c["finished"])
    going = [c for c in convs if not c["finished"]]
    phase = (max(going, key=lambda c: c["at"]) if going else max(convs, key=lambda c: c["at"]))["phase"]
    done = sum(c["done"] for c in convs)
    totals = [c["total"] for c in convs]
    of = f"/{sum(totals)}" if all(t is not None for t in totals) else ""
    state = "done" if not going else phase
    return f"{state} {finished}/{len(convs)} conversations, {done}{of} messages"


class ProgressBoard:
    def __init__(
        self,
        *,
        interval_s: float = INTERVAL_S,
        max_conversations: int = MAX_CONVERSATIONS,
        max_accounts: int = MAX_ACCOUNTS,
    ) -> None:
        self.interval_s, self.max_conversations = interval_s, max_conversations
        self.max_accounts = max_accounts
        self.accounts: OrderedDict[str, OrderedDict[str, _Entry]] = OrderedDict()
        self.dropped = 0

    def report(self, progress: SyncProgress) -> None:
        convs = self.accounts.get(progress.account_id)
        if convs is None:
            convs = self.accounts[progress.account_id] = OrderedDict()
            while len(self.accounts) > self.max_accounts:
                self.dropped += len(self.accounts.popitem(last=False)[1])
        self.accounts.move_to_end(progress.account_id)
        entry = convs.get(progress.conversation_id)
        if entry is None:
            convs[progress.conversation_id] = _Entry(progress)
            while len(convs) > self.max_conversations:
                convs.popitem(last=False)
                self.dropped += 1
        else:
            entry.latest, entry.pending = progress, True
            convs.move_to_end(progress.conversation_id)

    def load(self, account_id: str, stored: list[SyncProgress]) -> None:
        """What was stored before a restart, under what was reported since (already published)."""
        convs = self.accounts.setdefault(account_id, OrderedDict())
        for p in stored[: self.max_conversations]:
            if p.conversation_id not in convs and len(convs) < self.max_conversations:
                convs[p.conversation_id] = _Entry(p, pending=False)

    def due(self, now: float) -> list[SyncProgress]:
        """The updates to send now (each marked sent)."""
        out = []
        for convs in self.accounts.values():
            for entry in convs.values():
                if entry.pending and (
                    entry.latest.finished or entry.sent_at is None or now - entry.sent_at >= self.interval_s
                ):
                    entry.pending, entry.sent_at = False, now
                    out.append(entry.latest)
        return out

    def next_due(self, now: float) -> float | None:
        """Seconds until the next held-back update may go out (None: nothing is held back)."""
        waits = [
            max(0.0, self.interval_s - (now - (e.sent_at or now - self.interval_s)))
            for convs in self.accounts.values()
            for e in convs.values()
            if e.pending
        ]
        return min(waits) if waits else None

    def snapshot(self, account_id: str) -> list[SyncProgress]:
        """The latest per conversation, in conversation id order."""
        convs = self.accounts.get(account_id)
        return [convs[c].latest for c in sorted(convs)] if convs else []

    def forget(self, account_id: str) -> None:
        self.accounts.pop(account_id, None)


class AccountProgress:
    """``ctx.progress`` of one account: checks the report and hands it to the service."""

    def __init__(self, service: ProgressService, account: Account) -> None:
        self._service, self._account = service, account

    def report(
        self,
        conversation_id: str,
        *,
        done: int,
        total: int | None = None,
        phase: SyncPhase | str = SyncPhase.HISTORY,
        finished: bool = False,
    ) -> None:
        r = check_report(conversation_id, done, total, phase, finished)
        self._service.report(
            SyncProgress(
                network=self._account.network,
                account_id=self._account.id,
                conversation_id=r.conversation_id,
                phase=r.phase,
                done=r.done,
                total=r.total,
                finished=r.finished,
            )
        )


class ProgressService:
    def __init__(
        self,
        bus: Bus,
        tenant: str,
        db: Database | None,
        *,
        board: ProgressBoard | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus, self.tenant, self.db = bus, tenant, db
        self.board = board or ProgressBoard()
        self._repo = ConnectorStateRepo(db) if db is not None else None
        self._monotonic = monotonic
        self._wake = anyio.Event()
        self._unwritten: dict[tuple[str, str], SyncProgress] = {}
        self.published = 0

    def reporter(self, account: Account) -> AccountProgress:
        return AccountProgress(self, account)

    def report(self, progress: SyncProgress) -> None:
        self.board.report(progress)
        self._wake.set()

    def snapshot(self, account_id: str) -> dict[str, Any]:
        """The ``sync`` field of ``GET /v1/accounts/{id}``."""
        return summary([as_json(p) for p in self.board.snapshot(account_id)])

    async def load(self, account: Account) -> None:
        """Read back what an earlier run stored (a failure only leaves the board empty for the account)."""
        if self._repo is None:
            return
        try:
            stored = await stored_progress(self._repo, account, self.board.max_conversations)
        except Exception as exc:
            log.warning("progress.load_failed", account=account.id, error=f"{type(exc).__name__}: {exc}")
            return
        self.board.load(account.id, stored)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            wait = self.board.next_due(self._monotonic())
            if self._unwritten:
                wait = RETRY_AFTER_S if wait is None else min(wait, RETRY_AFTER_S)
            with anyio.move_on_after(wait if wait is not None else 3600.0):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Publish and store what is due now."""
        due = self.board.due(self._monotonic())
        for p in due:
            try:
                await self.bus.publish(topic(self.tenant, p.network, "ephemeral"), p, key=p.conversation_id)
                self.published += 1
            except BusClosed:
                break
        for p in due:
            self._unwritten[(p.account_id, p.conversation_id)] = p
        if len(self._unwritten) > MAX_UNWRITTEN:  # bounded even while the database is out
            self._unwritten = dict(list(self._unwritten.items())[-MAX_UNWRITTEN:])
        await self._write()

    async def _write(self) -> None:
        if self._repo is None or self.db is None or not self._unwritten:
            self._unwritten.clear()
            return
        batch, self._unwritten = self._unwritten, {}
        try:
            with anyio.fail_after(WRITE_TIMEOUT_S):
                async with self.db.session() as s:
                    for p in batch.values():
                        await self._repo.set(
                            p.account_id,
                            NAMESPACE,
                            p.conversation_id,
                            as_json(p),
                            max_entries=self.board.max_conversations,
                            session=s,
                        )
        except Exception as exc:  # the database is out: keep them for the next round
            log.warning("progress.write_failed", updates=len(batch), error=f"{type(exc).__name__}: {exc}")
            self._unwritten = {**batch, **self._unwritten}


async def stored_progress(repo: ConnectorStateRepo, account: Account, limit: int) -> list[SyncProgress]:
    """What is stored for one account (unreadable entries skipped)."""
    out = []
    for conversation_id, value in (await repo.items(account.id, NAMESPACE, limit=limit)).items():
        try:
            out.append(
                SyncProgress(
                    network=account.network,
                    account_id=account.id,
                    conversation_id=conversation_id,
                    phase=value["phase"],
                    done=value["done"],
                    total=value.get("total"),
                    finished=bool(value.get("finished")),
                    timestamp=value["at"],
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out
