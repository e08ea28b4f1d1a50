"""Dedupe: a bounded in-memory cache in front of the database's unique constraints.

The database is the truth (UNIQUE over network, conversation, remote id and part, plus the per-account
link); the cache only saves a round trip for what was seen recently by the same account. A cache miss is
always safe: the insert hits the constraint and is counted as a duplicate there.
"""

from __future__ import annotations

from collections import OrderedDict
from hashlib import blake2b

from ..schema import Message

MessageKey = tuple[str, str, str, int]
"""(network, conversation_id, remote_id, part)"""


def message_key(m: Message) -> MessageKey:
    return (m.network, m.conversation_id, m.remote_id, m.part)


def _digest(account_id: str, key: MessageKey) -> bytes:
    """16 bytes for an entry instead of the key's tuples and strings: ~125 bytes an entry instead of ~330
    (issue 19: a full cache held ~33 MB). Two keys share a digest with odds of 2^-128, far below any
    hardware fault; a false hit would skip a message as a duplicate, so a shorter hash would not do."""
    network, conversation_id, remote_id, part = key
    # Each field with its length first (no separator a remote id could contain makes two keys one);
    # surrogatepass: an id with a lone surrogate (a broken payload) still has its own bytes. One f-string:
    # twice as fast as joining a generator's, for the same text (twice per message: seen, then add).
    a, n, c, r = account_id, network, conversation_id, remote_id
    raw = f"{len(a)}:{a}{len(n)}:{n}{len(c)}:{c}{len(r)}:{r}{part}"
    return blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class DedupeCache:
    def __init__(self, maxsize: int = 100_000) -> None:
        self.maxsize = maxsize
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.hits = 0

    def seen(self, account_id: str, key: MessageKey) -> bool:
        k = _digest(account_id, key)
        if k in self._seen:
            self._seen.move_to_end(k)
            self.hits += 1
            return True
        return False

    def add(self, account_id: str, key: MessageKey) -> None:
        self._seen[_digest(account_id, key)] = None
        if len(self._seen) > self.maxsize:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
