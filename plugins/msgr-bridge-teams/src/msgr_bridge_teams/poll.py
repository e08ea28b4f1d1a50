"""Receiving by polling Graph, the way Graph allows it for delegated permissions.

Chat messages have no delegated delta query in v1.0 (``/chats/getAllMessages/delta`` is application-only),
so each chat is asked for what changed since its cursor::

    GET /chats/{id}/messages?$top=50&$orderby=lastModifiedDateTime desc
        &$filter=lastModifiedDateTime gt {cursor}

Every change of a message (new, edited, soft-deleted, reactions) moves its ``lastModifiedDateTime``, so one
query per chat finds all of them. A chat's cursor moves only when the pipeline has committed the payload
(the sink's ``ack``), and is kept in ``ctx.state`` under ``cursors``: after a restart or downtime the next
round asks from there, and what was pushed but not committed is asked for again (dedupe drops repeats).

What changed is decided from what this process saw before (``Known``: text version, deletion and reactions
of recent messages, bounded); for a message it has not seen, from the timestamps against the cursor
(created after it: new; edited after it: an edit; reactions created after it: added).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from .client import MAX_PAGES
from .convert import PAYLOAD_VERSION

KNOWN_MAX = 10_000
Seen = tuple[str | None, bool, frozenset[tuple[str, str]]]
"""(lastEditedDateTime, deleted, reactions as (user id, type)) of a message."""


def _reactions(msg: dict[str, Any], since: str | None = None) -> frozenset[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    items = msg.get("reactions")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        user = ((item.get("user") or {}).get("user") or {}) if isinstance(item.get("user"), dict) else {}
        uid, kind = user.get("id") if isinstance(user, dict) else None, item.get("reactionType")
        created = item.get("createdDateTime")
        if isinstance(uid, str) and isinstance(kind, str) and (since is None or str(created) > since):
            out.add((uid, kind))
    return frozenset(out)


def seen_of(msg: dict[str, Any]) -> Seen:
    edited = msg.get("lastEditedDateTime")
    return (edited if isinstance(edited, str) else None, bool(msg.get("deletedDateTime")), _reactions(msg))


class Known:
    """What this process last saw of recent messages (bounded, least recently seen dropped first)."""

    def __init__(self, limit: int = KNOWN_MAX) -> None:
        self.limit = limit
        self.items: OrderedDict[tuple[str, str], Seen] = OrderedDict()

    def get(self, conv: str, msg_id: str) -> Seen | None:
        return self.items.get((conv, msg_id))

    def put(self, conv: str, msg_id: str, seen: Seen) -> None:
        self.items[(conv, msg_id)] = seen
        self.items.move_to_end((conv, msg_id))
        while len(self.items) > self.limit:
            self.items.popitem(last=False)


def changes(conv: str, msg: dict[str, Any], cursor: str | None, before: Seen | None) -> list[dict[str, Any]]:
    """The payload parts (``change`` and reaction lists) for one fetched message."""
    now = seen_of(msg)
    out: list[dict[str, Any]] = []
    created = str(msg.get("createdDateTime") or "")
    if before is None:
        is_new = cursor is None or created > cursor
        if is_new:
            out.append({"change": "message"})
            if now[1]:
                out.append({"change": "delete"})
            added = now[2]
        else:
            if now[0] is not None and now[0] > (cursor or "") and not now[1]:
                out.append({"change": "edit"})
            if now[1]:
                out.append({"change": "delete"})
            added = _reactions(msg, cursor)
        removed: frozenset[tuple[str, str]] = frozenset()
    else:
        if now[0] != before[0] and now[0] is not None and not now[1]:
            out.append({"change": "edit"})
        if now[1] and not before[1]:
            out.append({"change": "delete"})
        added, removed = now[2] - before[2], before[2] - now[2]
    if added or removed:
        out.append(
            {
                "change": "reactions",
                "reactions_added": sorted(map(list, added)),
                "reactions_removed": sorted(map(list, removed)),
            }
        )
    return out


Fetch = Callable[[str, dict[str, str], int], Awaitable[list[dict[str, Any]]]]
"""(path, query, most pages) -> the items of a Graph collection."""


async def chat_changes(
    fetch: Fetch,
    conv: str,
    cursor: str | None,
    known: Known,
    self_id: str,
    sent: dict[str, str],
    *,
    first_page_only: bool,
) -> tuple[list[tuple[dict[str, Any], str]], str | None]:
    """Fetch one chat's changes since ``cursor``: ([(payload, its lastModifiedDateTime)], newest seen)."""
    params = {"$top": "50", "$orderby": "lastModifiedDateTime desc"}
    if cursor:
        params["$filter"] = f"lastModifiedDateTime gt {cursor}"
    items = await fetch(f"/chats/{conv}/messages", params, 1 if first_page_only else MAX_PAGES)
    items = [
        m for m in items if isinstance(m.get("lastModifiedDateTime"), str) and isinstance(m.get("id"), str)
    ]
    items.sort(key=lambda m: m["lastModifiedDateTime"])
    out, newest = [], cursor
    for msg in items:
        modified = msg["lastModifiedDateTime"]
        for part in changes(conv, msg, cursor, known.get(conv, msg["id"])):
            payload = {"v": PAYLOAD_VERSION, "self_id": self_id, "conversation": conv, "message": msg, **part}
            if part["change"] == "message" and msg["id"] in sent:
                payload["txn_id"] = sent[msg["id"]]
            out.append((payload, modified))
        known.put(conv, msg["id"], seen_of(msg))
        newest = modified if newest is None or modified > newest else newest
    return out, newest
