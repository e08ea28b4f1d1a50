"""Albums: Telegram messages that share a ``grouped_id`` (files sent together), merged into one payload.

Telegram's apps show an album as one message with several pictures; on the wire it is one message per
file, each with its own id. A client of the bridge sees what the apps show: one canonical message, whose
remote id is the album's first message, whose text is its caption(s), with every file as an attachment.
(mautrix-telegram bridges each item as its own Matrix event, because a Matrix event holds one file; a
canonical message holds several.) Edits, reactions and replies aimed at another message of the album are
turned towards the first one (``UpdateRouter.anchors``, bounded memory).

The items of one album come one after another: in one update container live (or in a few, close together,
when they come from another data centre: the inbox holds them ``WAIT_S``), consecutively in a difference
or a history page. Which items form one message is decided once and recorded in the keyed state
(``albums``: grouped id -> the message ids of each part) *before* the payload is pushed, so a redelivery
after a crash forms the same messages, and the store's dedupe on the first id drops nothing new: items
that came apart live (after ``WAIT_S``) stay a separate message, with their own first id, ever after.
"""

from __future__ import annotations

import json
from typing import Any

from msgr_bridge.sdk.state import KeyedStateStore

from .fields import NEW, _peer

WAIT_S = 0.5
"""How long the inbox waits for more items of an album before it pushes what it has."""
ALBUMS_MAP, ALBUMS_MAX = "albums", 10_000
ITEMS_MAX = 10
"""Telegram's limit of files per album."""

Key = tuple[str, int]


def key_of(payload: dict[str, Any]) -> Key | None:
    """(peer, grouped id) of a new message that belongs to an album, else None."""
    update = payload.get("update")
    message = update.get("message") if isinstance(update, dict) and update.get("_") in NEW else None
    grouped = message.get("grouped_id") if isinstance(message, dict) else None
    if not isinstance(grouped, int) or isinstance(grouped, bool) or not isinstance(message, dict):
        return None
    return json.dumps(message.get("peer_id"), sort_keys=True), grouped


def _id(payload: dict[str, Any]) -> int:
    message_id: int = payload["update"]["message"]["id"]
    return message_id


class Albums:
    def __init__(self, state: KeyedStateStore, anchors: Any) -> None:
        self.parts = state.map(ALBUMS_MAP, max_entries=ALBUMS_MAX)
        self.anchors = anchors
        """The router's map of (conversation, message id) -> the album's first message id."""

    async def merge(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``payloads`` with each run of one album's items merged as recorded (recorded now if new)."""
        out: list[dict[str, Any]] = []
        run: list[dict[str, Any]] = []
        for item in [*payloads, {}]:
            if run and (not item or key_of(item) != key_of(run[0])):
                out += await self._merge_run(run)
                run = []
            if item and key_of(item) is not None:
                run.append(item)
            elif item:
                out.append(item)
        return out

    async def _merge_run(self, run: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = key_of(run[0])
        assert key is not None
        name = f"{key[1]}:{key[0]}"
        recorded = await self.parts.get(name)
        parts: list[list[int]] = recorded if isinstance(recorded, list) else []
        known = {i for part in parts for i in part}
        new = [_id(p) for p in run if _id(p) not in known]
        if new:
            parts.append(new)
            await self.parts.set(name, parts)
        merged: list[dict[str, Any]] = []
        by_part: dict[int, dict[str, Any]] = {}
        for payload in run:
            index = next(n for n, part in enumerate(parts) if _id(payload) in part)
            first = by_part.get(index)
            if first is None or len(first.get("album", ())) + 1 >= ITEMS_MAX:
                by_part[index] = payload
                merged.append(payload)
                continue
            first.setdefault("album", []).append(
                {"message": payload["update"]["message"], "file": payload.get("file")}
            )
            self._anchor(payload, first)
        return merged

    def _anchor(self, member: dict[str, Any], first: dict[str, Any]) -> None:
        kind, number = _peer(member["update"]["message"]["peer_id"])
        self.anchors.put((f"{kind}:{number}", _id(member)), _id(first))
