"""Conversations on hold: where the delivery worker has to wait before sending again.

A conversation is held when its oldest entry waits: the platform asked us to back off (429, FLOOD_WAIT),
a transient failure is being retried later, or the account is not connected. Everything newer in that
conversation must wait behind it (per-conversation order). The outbox rows are the truth; this map only
lets ``OutboundService`` queue a new entry of a held conversation as due when the hold ends, so the worker
does not claim it, find it blocked and put it back, once per entry, for the whole back-off.

A hold that ends early (the blocking entry was sent, cancelled or failed for good) is cleared by the
worker; a stale one only delays entries up to its end, never loses one.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from ..store.types import utcnow

Key = tuple[str, str]
"""(account_id, conversation_id)"""


class ConversationHolds:
    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._until: OrderedDict[Key, datetime] = OrderedDict()

    def hold(self, account_id: str, conversation_id: str, until: datetime) -> None:
        key = (account_id, conversation_id)
        self._until[key] = until
        self._until.move_to_end(key)
        while len(self._until) > self.maxsize:
            self._until.popitem(last=False)

    def clear(self, account_id: str, conversation_id: str) -> None:
        self._until.pop((account_id, conversation_id), None)

    def until(self, account_id: str, conversation_id: str, now: datetime | None = None) -> datetime | None:
        """When the hold on this conversation ends (None: not held, or the hold is over)."""
        key = (account_id, conversation_id)
        end = self._until.get(key)
        if end is not None and end <= (now or utcnow()):
            del self._until[key]
            return None
        return end

    def __len__(self) -> int:
        return len(self._until)
