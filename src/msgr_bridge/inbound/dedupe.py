"""Dedupe: a bounded in-memory cache in front of the database's unique constraints.

The database is the truth (UNIQUE over network, conversation, remote id and part, plus the per-account
link); the cache only saves a round trip for what was seen recently by the same account. A cache miss is
always safe: the insert hits the constraint and is counted as a duplicate there.
"""

from __future__ import annotations

from collections import OrderedDict

from ..schema import Message

MessageKey = tuple[str, str, str, int]
"""(network, conversation_id, remote_id, part)"""


def message_key(m: Message) -> MessageKey:
    return (m.network, m.conversation_id, m.remote_id, m.part)


class DedupeCache:
    def __init__(self, maxsize: int = 100_000) -> None:
        self.maxsize = maxsize
        self._seen: OrderedDict[tuple[str, MessageKey], None] = OrderedDict()
        self.hits = 0

    def seen(self, account_id: str, key: MessageKey) -> bool:
        k = (account_id, key)
        if k in self._seen:
            self._seen.move_to_end(k)
            self.hits += 1
            return True
        return False

    def add(self, account_id: str, key: MessageKey) -> None:
        self._seen[(account_id, key)] = None
        if len(self._seen) > self.maxsize:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
