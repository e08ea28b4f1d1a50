"""The event hub behind ``/v1/events``: one tail of the event log shared by every stream client.

How a client gets every event exactly once, across reconnects:

* The event log (``event_log.seq``) is the truth. The hub subscribes to the bus topics that announce new
  log rows (``{tenant}.*.stored`` from the inbound pipeline, ``{tenant}.*.delivery`` from the outbound
  service) and fans out the rows after its high-water mark (one JSON encoding per event, shared by all
  clients). A notification that carries its row as written (``logged``) is sent as it is while such rows
  follow on from the mark without a gap; otherwise (a row announced without it, one not announced yet, a
  dropped notification) the log after the mark is read: the log decides, notifications only save the
  read. Typing and import progress (``{tenant}.*.ephemeral``,
  kinds ``typing`` and ``sync_progress``) are live only, without a ``seq``: never stored, so not replayed.
* A client connecting with ``cursor=N`` is registered first (live rows start queueing for it), then the
  log is replayed after ``N`` page by page; when the replay is done the queued live rows are sent,
  skipping any ``seq`` already replayed. Registration before replay means no gap; the ``seq`` check at
  the switch means no duplicate.
* A client too slow to keep up (more than ``[api] event_queue_max`` queued) is disconnected with a
  ``resume`` message carrying its last ``seq``; it reconnects with that cursor and replays: nothing lost.

Each client sees only the events of accounts its token may ``read`` (events without an account only with
``read:*``).
"""

from __future__ import annotations

from collections import deque

import anyio
import structlog
from anyio.abc import TaskStatus

from ..bus import Bus, Envelope
from ..jsonutil import dumps
from ..schema import EventBase
from ..store.outage import OutageGuard
from ..store.repos.event_log import EventLogRepo, LoggedEvent
from ..store.tokens import Action, TokenInfo

log = structlog.get_logger("msgr_bridge.inbound.hub")
REPLAY_PAGE = 500
PENDING_MAX = 4 * REPLAY_PAGE
"""Announced entries kept for the tail at most; past that it reads the log (nothing is lost)."""


def _dumps(frame: dict[str, object]) -> str:
    return dumps(frame)


def encode(e: LoggedEvent) -> str:
    return _dumps(
        {
            "seq": e.seq,
            "kind": e.kind,
            "account_id": e.account_id,
            "conversation_id": e.conversation_id,
            "at": e.created_at.isoformat(),
            "event": e.payload,
        }
    )


def encode_live(e: EventBase) -> str:
    return _dumps(
        {
            "seq": None,
            "kind": getattr(e, "kind", "event"),
            "account_id": e.account_id,
            "conversation_id": e.conversation_id,
            "at": e.timestamp.isoformat(),
            "event": e.model_dump(mode="json"),
        }
    )


class Client:
    """One stream connection's queue of ``(seq, account_id, json)``; ``lagged`` once it overflowed."""

    def __init__(self, token: TokenInfo, maxsize: int) -> None:
        self.token, self.maxsize = token, maxsize
        self.queue: deque[tuple[int | None, str | None, str]] = deque()
        self.wakeup = anyio.Event()
        self.lagged = False
        self.ended: str | None = None
        """Why the server ends this stream (``shutdown``, ``unauthorized``), or None while it runs."""
        self._allowed: dict[str | None, bool] = {}

    def rescope(self, token: TokenInfo) -> None:
        """The token as it reads now (its scopes are re-checked while the stream runs)."""
        if token != self.token:
            self.token, self._allowed = token, {}

    def end(self, reason: str) -> None:
        """End the stream: the pump sends a last control message with ``reason`` and returns."""
        if self.ended is None:
            self.ended = reason
        self.wakeup.set()

    def allows(self, account_id: str | None) -> bool:
        ok = self._allowed.get(account_id)
        if ok is None:
            ok = self._allowed[account_id] = self.token.allows(Action.READ, account_id)
        return ok

    def put(self, seq: int | None, account_id: str | None, data: str) -> None:
        if self.lagged or not self.allows(account_id):
            return
        if len(self.queue) >= self.maxsize:
            self.lagged = True
        else:
            self.queue.append((seq, account_id, data))
        self.wakeup.set()

    async def take(self) -> list[tuple[int | None, str | None, str]]:
        while not self.queue and not self.lagged and self.ended is None:
            self.wakeup = anyio.Event()
            await self.wakeup.wait()
        items = list(self.queue)
        self.queue.clear()
        return items


class EventHub:
    def __init__(self, bus: Bus, events: EventLogRepo, tenant: str, *, queue_max: int = 10_000) -> None:
        self.bus, self.events, self.tenant, self.queue_max = bus, events, tenant, queue_max
        self.clients: set[Client] = set()
        self.high_water = 0
        self._wake = anyio.Event()
        self._idle_since_mark = False
        self.delivered = 0
        self.closing = False
        self._outage = OutageGuard("api.events")
        self._written: dict[int, LoggedEvent] = {}
        """Event-log entries announced with their content (``seq`` -> entry), not yet fanned out."""
        self._unwritten = False
        """Something was announced without its content (or dropped): read the log after the mark."""
        self._reading = False
        """The tail is reading the log: rows announced meanwhile wait for it (it moves the mark)."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.high_water = await self.events.last_seq()
        async with anyio.create_task_group() as tg:
            for kind in ("stored", "delivery"):
                tg.start_soon(self._listen, f"{self.tenant}.*.{kind}")
            tg.start_soon(self._listen_ephemeral)
            task_status.started()
            await self._tail()

    async def _listen(self, pattern: str) -> None:
        async with self.bus.subscribe(
            pattern, maxsize=4096, overflow="drop_oldest", name=f"api-events:{pattern}"
        ) as sub:
            while batch := await sub.receive_batch(4096):
                self._note_written(batch)
                del batch  # not held while waiting: a burst's last batch would stay in memory until the next

    def _note_written(self, batch: list[Envelope]) -> None:
        for env in batch:
            entry = getattr(env.message, "logged", None)
            if isinstance(entry, LoggedEvent) and len(self._written) < PENDING_MAX:
                self._written[entry.seq] = entry
            else:
                self._unwritten = True
        # The everyday case: the rows follow on from the mark and nobody reads the log: sent from here,
        # without waking the tail (one task switch less per event).
        if self.clients and not (self._reading or self._unwritten) and (rows := self._following()):
            self._fan_out(rows)
        if self._written or self._unwritten or not self.clients:
            self._wake.set()

    async def _listen_ephemeral(self) -> None:
        async with self.bus.subscribe(
            f"{self.tenant}.*.ephemeral", maxsize=4096, overflow="drop_oldest", name="api-events:ephemeral"
        ) as sub:
            while batch := await sub.receive_batch(1024):
                self._fan_out_ephemeral(batch)
                del batch

    def _fan_out_ephemeral(self, batch: list[Envelope]) -> None:
        for env in batch:
            if isinstance(env.message, EventBase):
                data = encode_live(env.message)
                for c in list(self.clients):
                    c.put(None, env.message.account_id, data)

    async def _tail(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if not self.clients:
                # Nobody to fan out to: read nothing. The first client to register moves the mark up to
                # its cursor (``register``), so the tail never reads rows nobody needs.
                self._idle_since_mark = True
                self._written.clear()
                self._unwritten = False
                continue
            while rows := await self._next_rows():
                self._fan_out(rows)

    def _fan_out(self, rows: list[LoggedEvent]) -> None:
        self.high_water = rows[-1].seq
        clients = list(self.clients)
        for row in rows:
            data = encode(row)
            for c in clients:
                c.put(row.seq, row.account_id, data)
        self.delivered += len(rows) * len(clients)

    def _following(self) -> list[LoggedEvent]:
        """The announced rows that follow on from the mark without a gap (taken out of ``_written``)."""
        for seq in [s for s in self._written if s <= self.high_water]:
            del self._written[seq]  # sent already (read from the log before its notification came)
        rows: list[LoggedEvent] = []
        while (entry := self._written.pop(self.high_water + len(rows) + 1, None)) is not None:
            rows.append(entry)
        return rows

    async def _next_rows(self) -> list[LoggedEvent]:
        """The rows after the mark: from the notifications themselves while they follow on from it
        without a gap, else read from the log (the truth; a database outage is waited out here, the mark
        does not move, so nothing is skipped)."""
        if rows := self._following():
            return rows
        if not (self._written or self._unwritten):
            return []
        self._unwritten = False
        self._reading = True
        try:
            rows = await self._outage.retry(
                lambda: self.events.read_after(self.high_water, REPLAY_PAGE, tenant=self.tenant),
                "read the event log",
            )
        finally:
            self._reading = False
        if len(rows) == REPLAY_PAGE:
            self._unwritten = True  # more to read
        elif not rows:
            self._written.clear()  # nothing after the mark: what is left was read already
        return rows

    def register(self, token: TokenInfo, cursor: int) -> Client:
        """A new stream client, which replays the log after ``cursor`` itself.

        After an idle spell (no clients, so the tail read nothing) the mark moves up to the first new
        client's cursor: the tail then hands it the rows after that, and its replay covers the same rows
        (the seq check at the switch drops the overlap). No gap, and no read of what nobody needs.
        ``cursor`` must not be past the log's head (the route refuses such a cursor): the mark it sets is
        where every later client's live rows start."""
        if not self.clients and self._idle_since_mark:
            self.high_water = max(self.high_water, cursor)
            self._idle_since_mark = False
        client = Client(token, self.queue_max)
        self.clients.add(client)
        return client

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)

    def close_streams(self) -> None:
        """At shutdown: end every stream now (each gets a ``shutdown`` message with its cursor), so the
        server's shutdown does not wait for clients that would otherwise stay connected."""
        self.closing = True
        for c in list(self.clients):
            c.end("shutdown")

    async def replay(self, client: Client, cursor: int) -> tuple[list[str], int, bool]:
        """One page of the log after ``cursor`` that this client may read, the last seq looked at, and
        whether the log is exhausted."""
        rows = await self.events.read_after(cursor, REPLAY_PAGE, tenant=self.tenant)
        last = rows[-1].seq if rows else cursor
        return [encode(r) for r in rows if client.allows(r.account_id)], last, len(rows) < REPLAY_PAGE
