"""One ``/sync`` answer turned into raw payloads for the sink, gaps in limited timelines closed first.

Kept apart from the connector because it is the whole inbound read path (state, timeline, ephemeral and
invite sections, plus ``/messages`` backfill) and shared by ``sync_state`` (history) and ``subscribe``
(live); the connector only decides where the payloads go and when the sync token is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client

from . import client as wire
from .timeline import Timeline


async def sync_payloads(
    api: Callable[[], Client],
    memory: Timeline,
    resp: Mapping[str, Any],
    since: str | None,
    *,
    live: bool,
    max_backfill: int,
    log: Any,
) -> tuple[list[Any], bool]:
    """Raw payloads of one sync answer, in order per room; False when a gap could not be closed.

    Typing notifications are passed on only when ``live``: as history they would show someone typing
    long after they stopped. ``api`` is asked for the client on every request, so a disconnect in the
    middle of a backfill fails the next page as "not connected" instead of using a closed session.
    """
    out: list[Any] = []
    complete = True
    account_data = resp.get("account_data", {}).get("events", [])
    memory.note_account_data(account_data if isinstance(account_data, list) else [])
    rooms = resp.get("rooms", {})
    for section in ("join", "leave"):
        for room_id, room in (rooms.get(section) or {}).items():
            for event in (room.get("state") or {}).get("events", []):
                memory.note_state(room_id, event)
            timeline = room.get("timeline") or {}
            events = list(timeline.get("events") or [])
            if timeline.get("limited") and since and timeline.get("prev_batch"):
                gap, closed = await backfill(
                    api, room_id, timeline["prev_batch"], since, budget=max_backfill, log=log
                )
                events = gap + events
                complete = complete and closed
            for event in events:
                if (payload := await memory.timeline_payload(room_id, event)) is not None:
                    out.append(payload)
            ephemeral = (room.get("ephemeral") or {}).get("events") or []
            out += [
                p
                for p in memory.ephemeral_payloads(room_id, ephemeral)
                if live or p["event"].get("type") != "m.typing"
            ]
    for room_id, invite in (rooms.get("invite") or {}).items():
        if (payload := memory.invite_payload(room_id, invite)) is not None:
            out.append(payload)
    return out, complete


async def backfill(
    api: Callable[[], Client], room_id: str, start: str, until: str, *, budget: int, log: Any
) -> tuple[list[Any], bool]:
    """Events between the sync token ``until`` and a limited timeline's ``prev_batch``, oldest first.

    At most ``budget`` events: a room that was very busy while we were away costs bounded time, and the
    snapshot then says it is incomplete instead of stalling the connect.
    """
    token = start
    chunks: list[Any] = []
    path = Path.v3.rooms[room_id].messages
    while budget > 0:
        query = {"dir": "b", "from": token, "to": until, "limit": str(min(100, budget))}
        page = await wire.raw(api(), Method.GET, path, "history backfill", query=query)
        chunk = page.get("chunk") or []
        chunks += chunk
        budget -= len(chunk)
        if not chunk or not page.get("end"):
            return list(reversed(chunks)), True
        token = page["end"]
    log.warning("matrix.backfill_truncated", room_id=room_id, fetched=len(chunks))
    return list(reversed(chunks)), False
