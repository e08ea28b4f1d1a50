"""The reaction sets the connector remembers, one per (conversation, message, sender), bounded in number.

XEP-0444 sends a sender's whole set of reactions on a message every time it changes, while the canonical
events are per emoji. So the connector keeps the set it saw last: inbound, what is missing from the new
set becomes ``removed`` in the payload (``convert`` turns it into REMOVE events); outbound, ``react`` sends
our remembered set with one emoji added or taken out.

Only the most recent sets are kept. The state store offers ``get`` and ``set`` of whole JSON values (no
delete, no listing), so the sets are hashed into ``buckets`` fixed keys of up to ``WAYS`` sets each, the
most recently changed first::

    "reaction-sets:17": [["room@conference.example.org", "<message id>", "room@.../bob", ["👍", "🎉"]], ...]

The store therefore holds at most ``buckets`` keys and ``buckets * WAYS`` sets (the ``reaction_sets``
setting, default ``CAPACITY``), whatever the bridge's uptime. A set is dropped when ``WAYS`` more recently
changed sets land in its bucket; as keys spread evenly, the most recent few thousand (about half the
capacity) are all but certain to be kept. Unlike ``idstore``'s ring, nothing is loaded at connect and
nothing is held in memory: each reaction reads and rewrites one small bucket, at once, so a restart or a
crash loses nothing. An empty set is removed from its bucket (it means the same as a forgotten one).

What a forgotten set costs, which is why only old messages should be affected:

- inbound, the sender's new set still arrives whole, as adds; only the emojis they took away since their
  previous update are not reported as removed;
- outbound, ``react`` sends a set of just the added emoji (or an empty set for a removal), so other
  reactions we had put on that old message disappear from it on the XMPP side.

Changing ``reaction_sets`` rehashes every set into a different bucket: all remembered sets are forgotten
once, and keys beyond the new number of buckets stay in the store unused.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from slixmpp import JID

from msgr_bridge.connectors.protocol import ConnectorStateStore, RawPayload
from msgr_bridge.errors import ConfigError

PREFIX = "reaction-sets:"
WAYS = 16
CAPACITY = 8192

Ident = tuple[str, str, str]
"""(conversation, message id, sender): whose set on which message."""


def capacity_setting(settings: Mapping[str, Any]) -> int:
    """The ``reaction_sets`` setting: how many sets to remember (a number, or its digits from a form)."""
    raw = settings.get("reaction_sets", CAPACITY)
    try:
        value = int(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else 0
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"xmpp 'reaction_sets' must be a positive whole number, not {raw!r}",
            hint=f"remove the setting for the default of {CAPACITY}",
        )
    return value


def payload_ident(payload: RawPayload, own_jid: str) -> Ident | None:
    """Whose set a reactions payload carries: in a room the occupant, in a chat the bare JID; ours as us."""
    sender = payload.get("from")
    reactions = payload.get("reactions")
    target = reactions.get("id") if isinstance(reactions, Mapping) else None
    if not isinstance(sender, str) or not isinstance(target, str):
        return None
    if payload.get("self"):
        conversation = (
            JID(sender).bare if payload.get("type") == "groupchat" else str(payload.get("to") or "")
        )
        return JID(conversation).bare, target, own_jid
    if payload.get("type") == "groupchat":
        return JID(sender).bare, target, sender
    return JID(sender).bare, target, JID(sender).bare


def _entry(raw: Any) -> tuple[Ident, list[str]] | None:
    if not isinstance(raw, list) or len(raw) != 4:
        return None
    conversation, message, sender, values = raw
    if not all(isinstance(v, str) for v in (conversation, message, sender)) or not isinstance(values, list):
        return None
    if not all(isinstance(v, str) for v in values):
        return None
    return (conversation, message, sender), values


class ReactionSets:
    """Reads and changes remembered sets; one instance per connector (its lock orders changes)."""

    def __init__(self, state: ConnectorStateStore, *, capacity: int = CAPACITY, ways: int = WAYS) -> None:
        self.state = state
        self.ways = ways
        self.buckets = max(1, -(-capacity // ways))
        self._lock = asyncio.Lock()
        """A change reads and rewrites a whole bucket; two at once would lose one of them."""

    def key(self, ident: Ident) -> str:
        digest = hashlib.blake2b("\0".join(ident).encode(), digest_size=8).digest()
        return f"{PREFIX}{int.from_bytes(digest) % self.buckets}"

    async def _bucket(self, key: str) -> list[tuple[Ident, list[str]]]:
        raw = await self.state.get(key)
        if not isinstance(raw, list):
            return []  # nothing yet, or junk: the next write replaces it
        return [e for item in raw if (e := _entry(item)) is not None]

    async def get(self, ident: Ident) -> list[str] | None:
        """The remembered set, or None when there is none (never seen, emptied, or forgotten)."""
        for found, values in await self._bucket(self.key(ident)):
            if found == ident:
                return values
        return None

    async def change(
        self, ident: Ident, new: Callable[[list[str] | None], list[str]]
    ) -> tuple[list[str] | None, list[str]]:
        """Replace the set with ``new(old)``; returns (old, new). ``old`` is None when not remembered."""
        async with self._lock:
            key = self.key(ident)
            bucket = await self._bucket(key)
            index = next((i for i, (found, _v) in enumerate(bucket) if found == ident), None)
            old = bucket.pop(index)[1] if index is not None else None
            values = list(dict.fromkeys(new(old)))
            if index == 0 and values == old:
                return old, values  # already the newest in its bucket: nothing to write
            if values:
                bucket.insert(0, (ident, values))
            elif index is None:
                return old, values  # an empty set for one we do not hold: nothing to write
            await self.state.set(key, [[*found, v] for found, v in bucket[: self.ways]])
            return old, values


__all__ = ["CAPACITY", "PREFIX", "WAYS", "Ident", "ReactionSets", "capacity_setting", "payload_ident"]
