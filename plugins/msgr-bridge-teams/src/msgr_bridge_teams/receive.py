"""Receiving for the Teams connector: the ``subscribe()`` loop, one polling round, and the acks that move the
committed cursors.

Polling mode: every round lists the chats now and then (``chats_every``) and fetches each chat and followed
channel from its cursor; the interval drops to ``poll_min_s`` after activity and grows by half per quiet
round up to ``poll_max_s``. Webhook mode (``notify.py``): a round runs when a notification arrives and
fetches only the conversations it named; the timer still runs (every ``webhook_poll_s``, sooner while a
conversation has no subscription) to list the chats, keep subscriptions renewed and poll what is not
covered. Graph's throttling (429/503 with ``Retry-After``) makes the round wait that long and try again;
nothing is skipped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import anyio

from msgr_bridge import RateLimited, TransientError
from msgr_bridge.connectors.protocol import Ack

from .channels import Entry, channel_changes
from .poll import Known, chat_changes

if TYPE_CHECKING:
    from .notify import Notifications
    from .pending import Pending

STATE_CURSORS = "cursors"
STATE_CHANNELS = "channels"


class Receiving:
    """Mixed into ``TeamsConnector`` (which sets every attribute named here in ``__init__``)."""

    ctx: Any
    graph: Any
    settings: Any
    log: Any
    notes: Notifications
    self_id: str
    cursors: dict[str, str]
    committed: dict[str, str]
    channel_entries: dict[str, Entry]
    channel_committed: dict[str, Entry]
    known: Known
    sent: OrderedDict[str, str]
    pending: Pending
    chats: list[str]
    rounds: int
    interval: float
    listed_at: float = float("-inf")
    _stopped: bool
    _wake: anyio.Event
    _sending: int
    _sends_done: anyio.Event

    def stopping(self) -> bool:
        """Whether ``disconnect()`` was called (a method: it changes while ``subscribe`` awaits)."""
        return self._stopped

    def poke(self) -> None:
        """End the current wait (a notification arrived, or the connector stops)."""
        self._wake.set()

    async def _wait(self, seconds: float) -> bool:
        """Wait ``seconds`` or until poked; True when the time ran out."""
        with anyio.move_on_after(seconds) as scope:
            await self._wake.wait()
        if not self._stopped:
            self._wake = anyio.Event()
        return scope.cancelled_caught

    def conversations(self) -> list[str]:
        return [*self.chats, *self.settings.channels]

    async def subscribe(self) -> None:
        await self.notes.open()
        timer = True
        while not self.stopping():
            try:
                pushed = await self.round(timer)
            except RateLimited as exc:
                self.log.info("teams.throttled", retry_after=exc.retry_after)
                await self._wait(exc.retry_after)
                continue
            except TransientError:
                if self.stopping():
                    return  # disconnect() closed the session under a request
                raise
            if self.stopping():
                return
            self.interval = (
                self.settings.poll_min_s if pushed else min(self.settings.poll_max_s, self.interval * 1.5)
            )
            timer = await self._wait(self.next_wait())

    def next_wait(self) -> float:
        notes = self.notes
        if not notes.active or any(not notes.covered(c) for c in self.conversations()):
            return self.interval
        return min(self.settings.webhook_poll_s, self.settings.subscription_s / 8)

    async def round(self, timer: bool) -> int:
        """One round: everything in polling mode; in webhook mode what the notifications named, plus (on
        the timer) a fresh chat list, subscriptions kept up and the conversations without one."""
        notes = self.notes
        if not notes.active:
            return await self.poll_round()
        only, everything = notes.take()
        stale = anyio.current_time() - self.listed_at >= self.settings.webhook_poll_s
        if everything or not self.chats or (timer and stale):
            await self.list_chats()
        for conv in only or ():
            if "/" not in conv and conv not in self.chats:
                self.chats.append(conv)  # a chat that appeared since the last listing
        await notes.maintain(self.conversations())
        if only is not None and timer:
            only |= {c for c in self.conversations() if not notes.covered(c)}
        return await self.poll_round(only, relist=False)

    async def poll_round(self, only: set[str] | None = None, *, relist: bool = True) -> int:
        """One polling round over every chat and followed channel (or those in ``only``); returns how many
        payloads it pushed."""
        if relist and (not self.chats or self.rounds % self.settings.chats_every == 0):
            await self.list_chats()
        self.rounds += 1
        pushed = 0
        for conv in list(self.chats):
            if self.stopping():
                break
            if only is not None and conv not in only:
                continue
            found, newest = await chat_changes(
                self.fetch,
                conv,
                self.cursors.get(conv),
                self.known,
                self.self_id,
                self.sent,
                first_page_only=conv not in self.cursors,
            )
            for payload, modified in found:
                if self.stopping():
                    return pushed
                await self.ctx.sink.push(payload, ack=self._ack(conv, modified))
                pushed += 1
            if newest is not None:
                self.cursors[conv] = newest
        for conv in self.settings.channels:
            if self.stopping():
                break
            if only is not None and conv not in only:
                continue
            entry = self.channel_entries.get(conv, {})
            found_in_channel, new_entry = await channel_changes(
                self.graph, conv, entry, self.known, self.self_id, self.sent, self.settle
            )
            self.channel_entries[conv] = new_entry
            commit = self._channel_commit(conv, new_entry, len(found_in_channel))
            if not found_in_channel:
                await commit()
            for payload in found_in_channel:
                if self.stopping():
                    return pushed
                await self.ctx.sink.push(payload, ack=commit)
                pushed += 1
        return pushed

    def _channel_commit(self, conv: str, entry: Entry, count: int) -> Ack:
        """An ack that commits the channel's new link once all ``count`` payloads were acknowledged."""
        left = [count]

        async def ack() -> None:
            left[0] -= 1
            if left[0] <= 0:
                self.channel_committed[conv] = entry
                await self.ctx.state.set(STATE_CHANNELS, dict(self.channel_committed))

        return ack

    def _ack(self, conv: str, modified: str) -> Ack:
        async def ack() -> None:
            if modified > self.committed.get(conv, ""):
                self.committed[conv] = modified
                await self.ctx.state.set(STATE_CURSORS, dict(self.committed))

        return ack

    async def fetch(self, path: str, params: dict[str, str], most: int) -> list[dict[str, Any]]:
        """Graph's answer, once the sends in flight have their ids: a fetch can see our new message before
        its send returns, and the echo must still find the send's txn id."""
        items: list[dict[str, Any]] = await self.graph.pages(path, params, most)
        await self.settle(items)
        return items

    async def settle(self, items: list[dict[str, Any]] | None = None) -> None:
        """Before fetched ``items`` become payloads: wait for the sends in flight, and match our own
        messages to sends a crash left pending (``pending.py``)."""
        if self._sending:
            with anyio.move_on_after(self.settings.request_timeout_s):
                await self._sends_done.wait()
        if items:
            await self.pending.adopt(items, self.self_id)

    async def list_chats(self) -> list[dict[str, Any]]:
        chats: list[dict[str, Any]] = await self.graph.pages("/me/chats", {"$top": "50"})
        self.chats = [c["id"] for c in chats if isinstance(c.get("id"), str)]
        self.listed_at = anyio.current_time()
        return chats
