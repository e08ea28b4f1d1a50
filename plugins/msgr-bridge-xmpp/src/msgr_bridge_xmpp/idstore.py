"""The remembered message ids (``replies.RecentMessages``) kept in the account's state store across restarts.

Without them, a reaction, retraction, reply or read marker sent after a restart to a room message seen
before it would name the sender's id instead of the room's stanza-id, and other clients would not find the
message. The state store only offers ``get`` and ``set`` of whole JSON values (no delete, no append), so
the entries live in a ring of ``SEGMENTS`` keys of up to ``SEGMENT`` entries each::

    "ids:7": {"seq": 27, "entries": [["room@conference.example.org", "<id>", "<author>", "<stanza-id>",
                                      "<occupant-id>"], ...]}

An entry also says who wrote the message: its author and, from a room that gives one, the author's
XEP-0421 occupant-id, so that a retraction or correction of a message seen before a restart is still
checked against its author (``authorship.py``). The occupant-id came later: entries written before it
have four items (read as having none), and an entry without one is still written with four, so that an
older version reading the store back skips only the entries that have one.

Segment number ``seq`` is stored under key ``ids:{seq % SEGMENTS}``. New entries go into the newest
segment; when it is full the next one starts and overwrites the oldest slot. So the store holds at most
``SEGMENTS`` keys and ``SEGMENTS * SEGMENT`` entries (the in-memory limit), the oldest dropped first, and
a flush rewrites only the newest segment or two, never the whole map. The connector flushes every few
seconds while entries are pending, after a sync, and on disconnect; a crash loses at most the last few
seconds, which then fall back to the plain id as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from msgr_bridge.connectors.protocol import ConnectorStateStore

from .replies import LIMIT, Entry

SEGMENT = 250
SEGMENTS = LIMIT // SEGMENT
PREFIX = "ids:"


def _entry(raw: Any) -> Entry | None:
    if not isinstance(raw, list) or len(raw) not in (4, 5):
        return None
    conversation, msg_id, author, stanza_id, occupant_id = [*raw, None][:5]
    if not all(isinstance(v, str) and v for v in (conversation, msg_id, author)):
        return None
    if not all(v is None or isinstance(v, str) for v in (stanza_id, occupant_id)):
        return None
    return conversation, msg_id, author, stanza_id or None, occupant_id or None


def _stored(entry: Entry) -> list[str | None]:
    """An entry as written: without a trailing occupant-id it has none (the four-item form)."""
    return list(entry) if entry[4] else list(entry[:4])


class IdStore:
    """Reads and appends the ring of segments; one instance per connector (it knows the newest segment)."""

    def __init__(
        self, state: ConnectorStateStore, *, segment: int = SEGMENT, segments: int = SEGMENTS
    ) -> None:
        self.state = state
        self.segment = segment
        self.segments = segments
        self._seq = 0
        self._current: list[Entry] = []
        """The newest segment's entries, including any a failed write still owes the store."""
        self._unwritten = False
        self._lock = asyncio.Lock()
        self.skipped = 0
        """Stored entries or segments that were unreadable at ``load`` (counted, then ignored)."""

    @property
    def unwritten(self) -> bool:
        """Entries a failed write still owes the store (the next ``flush`` writes them)."""
        return self._unwritten

    def _key(self, seq: int) -> str:
        return f"{PREFIX}{seq % self.segments}"

    async def load(self) -> list[Entry]:
        """Every stored entry, oldest first; afterwards ``flush`` continues the newest segment."""
        found: list[tuple[int, list[Entry]]] = []
        for slot in range(self.segments):
            value = await self.state.get(f"{PREFIX}{slot}")
            if value is None:
                continue
            seq = value.get("seq") if isinstance(value, dict) else None
            raw = value.get("entries") if isinstance(value, dict) else None
            if not isinstance(seq, int) or seq % self.segments != slot or not isinstance(raw, list):
                self.skipped += 1
                continue
            entries = [e for item in raw if (e := _entry(item)) is not None]
            self.skipped += len(raw) - len(entries)
            found.append((seq, entries))
        found.sort(key=lambda item: item[0])
        if found:
            self._seq, newest = found[-1]
            self._current = newest if len(newest) < self.segment else []
            if not self._current:
                self._seq += 1
        return [entry for _seq, entries in found for entry in entries]

    async def flush(self, entries: Iterable[Entry]) -> int:
        """Append ``entries`` and write the segments they touch; returns the number of keys written.

        A failed write raises, and keeps what it could not write for the next ``flush``."""
        async with self._lock:
            new = list(entries)
            self._current += new
            self._unwritten = self._unwritten or bool(new)
            writes = 0
            while len(self._current) >= self.segment:
                await self._write(self._current[: self.segment])
                writes += 1
                self._seq += 1
                self._current = self._current[self.segment :]
                self._unwritten = bool(self._current)
            if self._unwritten:
                await self._write(self._current)
                writes += 1
                self._unwritten = False
            return writes

    async def _write(self, entries: list[Entry]) -> None:
        await self.state.set(
            self._key(self._seq), {"seq": self._seq, "entries": [_stored(e) for e in entries]}
        )


__all__ = ["PREFIX", "SEGMENT", "SEGMENTS", "IdStore"]
