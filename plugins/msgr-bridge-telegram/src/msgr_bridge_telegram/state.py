"""Telegram's update state (``pts``/``qts``/``date``/``seq``, and ``pts`` per channel), committed only once
the payloads it covers are.

Telegram numbers what happens to an account: the common box (private chats, basic groups) has ``pts``,
each channel its own. After downtime ``updates.getDifference`` and ``updates.getChannelDifference`` give
everything after a stored state. The ledger stores a state only when every payload up to it has been
acknowledged by the core (committed), in the order Telegram sent them; an update the connector does not
push counts as done at once. A crash before the commit repeats the catch-up, which the store deduplicates.

The stored value (``ctx.state["updates"]``) is ``{"pts", "qts", "date", "seq", "channels": {id: pts}}``;
the same shape travels as the sync cursor (JSON). The SDK's keyed state slots in behind ``store``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from msgr_bridge.connectors.protocol import ConnectorStateStore

STATE_KEY = "updates"
CHANNELS_MAX = 5000
COMMON = 0
"""The box key of the common box; a channel's box key is its id."""


@dataclass
class UpdateState:
    pts: int = 0
    qts: int = 0
    date: int = 0
    seq: int = 0
    channels: dict[int, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.pts == 0

    def advance(self, box: int, pts: int, date: int = 0) -> None:
        if box == COMMON:
            self.pts = max(self.pts, pts)
        elif pts > self.channels.get(box, 0):
            self.channels[box] = pts
            if len(self.channels) > CHANNELS_MAX:  # bounded: forget the channel with the oldest pts
                del self.channels[min(self.channels, key=lambda c: self.channels[c])]
        self.date = max(self.date, date)

    def merge(self, other: UpdateState) -> None:
        self.advance(COMMON, other.pts, other.date)
        self.qts, self.seq = max(self.qts, other.qts), max(self.seq, other.seq)
        for channel, pts in other.channels.items():
            self.advance(channel, pts)

    def as_json(self) -> dict[str, Any]:
        return {
            "pts": self.pts,
            "qts": self.qts,
            "date": self.date,
            "seq": self.seq,
            "channels": {str(k): v for k, v in self.channels.items()},
        }

    def as_json_text(self) -> str:
        return json.dumps(self.as_json(), sort_keys=True)

    @classmethod
    def from_json(cls, value: Any) -> UpdateState:
        """A stored state or cursor; anything unreadable is the empty state (a fresh start, not a crash)."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return cls()
        if not isinstance(value, dict):
            return cls()

        def number(v: Any) -> int:
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

        channels = value.get("channels")
        return cls(
            pts=number(value.get("pts")),
            qts=number(value.get("qts")),
            date=number(value.get("date")),
            seq=number(value.get("seq")),
            channels={
                int(k): number(v)
                for k, v in (channels.items() if isinstance(channels, dict) else ())
                if str(k).isdigit()
            },
        )


class UpdateLedger:
    """Orders acknowledgements and stores the state they reach."""

    def __init__(self, store: ConnectorStateStore) -> None:
        self.store = store
        self.committed = UpdateState()
        self._pending: deque[list[Any]] = deque()
        """``[done, box, pts, date]`` in the order Telegram sent the updates."""
        self._highest: dict[int, int] = {}
        """The highest pts entered per box (pending or committed) on this connection."""

    async def load(self) -> UpdateState:
        self.committed = UpdateState.from_json(await self.store.get(STATE_KEY))
        return self.committed

    async def adopt(self, state: UpdateState) -> None:
        """Take a state the core has committed (the sync cursor) and store it."""
        before = self.committed.as_json()
        self.committed.merge(state)
        if self.committed.as_json() != before:
            await self.store.set(STATE_KEY, self.committed.as_json())

    def track(self, box: int, pts: int, date: int) -> Callable[[], Awaitable[None]]:
        """An update that is pushed: the returned ack marks it committed."""
        entry = [False, box, pts, date]
        self._pending.append(entry)
        self._raise(box, pts)

        async def ack() -> None:
            entry[0] = True
            await self._advance()

        return ack

    async def done(self, box: int, pts: int, date: int) -> None:
        """An update that is not pushed (nothing to store): committed as soon as everything before it is."""
        self._pending.append([True, box, pts, date])
        self._raise(box, pts)
        await self._advance()

    def follows(self, box: int, pts: int, count: int) -> bool:
        """Whether an update moving ``box`` to ``pts`` (by ``count``) follows what was seen, with no gap."""
        return pts - count <= self.seen(box)

    def seen(self, box: int) -> int:
        """The pts up to which ``box``'s updates reached the core (committed, pushed, or in the history)."""
        committed = self.committed.pts if box == COMMON else self.committed.channels.get(box, 0)
        return max(committed, self._highest.get(box, 0))

    def saw(self, state: UpdateState) -> None:
        """The catch-up returned everything up to ``state`` as history."""
        self._raise(COMMON, state.pts)
        for channel, pts in state.channels.items():
            self._raise(channel, pts)

    def _raise(self, box: int, pts: int) -> None:
        self._highest[box] = max(self._highest.get(box, 0), pts)

    def reset(self) -> None:
        """Forget unacknowledged updates (a new connection starts from the committed state)."""
        self._pending.clear()
        self._highest.clear()

    async def _advance(self) -> None:
        moved = False
        while self._pending and self._pending[0][0]:
            _, box, pts, date = self._pending.popleft()
            if pts:
                self.committed.advance(box, pts, date)
                moved = True
        if moved:
            await self.store.set(STATE_KEY, self.committed.as_json())
