"""Events that arrive before their target (an edit, delete or reaction racing its message).

They are held, bounded in number and time, keyed by the target's (network, conversation, remote id), and
released when the target is stored. What expires or overflows is handed back to the caller, which
quarantines it with the reason: nothing is dropped silently.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from ..schema import Event

TargetKey = tuple[str, str, str]
"""(network, conversation_id, target remote id)"""


@dataclass(frozen=True, slots=True)
class Held:
    event: Event
    held_at: float


class HeldEvents:
    def __init__(self, *, max_events: int = 10_000, ttl_s: float = 600.0) -> None:
        self.max_events = max_events
        self.ttl_s = ttl_s
        self._by_target: OrderedDict[TargetKey, list[Held]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def hold(self, target: TargetKey, event: Event, now: float | None = None) -> list[Held]:
        """Hold ``event``; returns what had to be evicted to stay within bounds (oldest first)."""
        self._by_target.setdefault(target, []).append(Held(event, time.monotonic() if now is None else now))
        self._count += 1
        evicted: list[Held] = []
        while self._count > self.max_events:
            key, items = next(iter(self._by_target.items()))
            evicted.append(items.pop(0))
            self._count -= 1
            if not items:
                del self._by_target[key]
        return evicted

    def release(self, target: TargetKey) -> list[Event]:
        items = self._by_target.pop(target, [])
        self._count -= len(items)
        return [h.event for h in items]

    def expire(self, now: float | None = None) -> list[Held]:
        now = time.monotonic() if now is None else now
        expired: list[Held] = []
        for key in list(self._by_target):
            items = self._by_target[key]
            keep = [h for h in items if now - h.held_at < self.ttl_s]
            expired.extend(h for h in items if now - h.held_at >= self.ttl_s)
            if keep:
                self._by_target[key] = keep
            else:
                del self._by_target[key]
        self._count -= len(expired)
        return expired
