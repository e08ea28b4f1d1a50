"""The inbound read path: ``/sync`` answers turned into raw payloads, and room snapshots.

``sync_payloads``: one ``/sync`` answer into raw payloads for the sink, gaps in limited timelines closed
first through ``/messages`` (shared by ``sync_state``, as history, and ``subscribe``, live).

``room_snapshot``: the joined rooms (conversations) and their members (contacts). A room in the user's
``m.direct`` account data is a direct conversation, named after the other member when it has no
``m.room.name``; every other room is a group. One ``/state`` call per room gives name, topic and members.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.types import EventType

from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import Account, Contact, Conversation, ConversationKind

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
    """Raw payloads of one sync answer, in order per room; False when a gap could not be closed. Typing
    only when ``live`` (as history it is stale). ``api`` gives the client per request, so a disconnect
    during a backfill fails the next page as "not connected" instead of using a closed session."""
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


async def room_snapshot(
    client: Client, account: Account, self_id: str, memory: Timeline
) -> tuple[tuple[Conversation, ...], tuple[Contact, ...]]:
    try:
        async with wire.wire_errors("m.direct lookup"):
            memory.set_direct(await client.get_account_data(EventType.DIRECT))
    except PermanentError:
        pass  # M_NOT_FOUND: the user has no direct chats yet
    async with wire.wire_errors("joined rooms"):
        joined = await client.get_joined_rooms()
    conversations: list[Conversation] = []
    contacts: dict[str, Contact] = {}
    for room_id in joined:
        state = await wire.raw(client, Method.GET, Path.v3.rooms[room_id].state, "room state")
        name = topic = None
        members: dict[str, str | None] = {}
        for event in state if isinstance(state, list) else []:
            content: dict[str, Any] = event.get("content") or {}
            match event.get("type"):
                case "m.room.name":
                    name = content.get("name") or None
                case "m.room.topic":
                    topic = content.get("topic") or None
                case "m.room.member" if content.get("membership") == "join":
                    members[event["state_key"]] = content.get("displayname") or None
                    memory.note_state(room_id, event)
        is_direct = room_id in memory.direct
        if is_direct and name is None:
            others = [n or u for u, n in members.items() if u != self_id]
            name = ", ".join(sorted(others)) or None
        conversations.append(
            Conversation(
                network=account.network,
                account_id=account.id,
                remote_id=room_id,
                name=name,
                topic=topic,
                type=ConversationKind.DIRECT if is_direct else ConversationKind.GROUP,
                members=tuple(sorted(members)),
            )
        )
        for user_id, display in members.items():
            if user_id not in contacts or (display and not contacts[user_id].display_name):
                contacts[user_id] = Contact(
                    network=account.network,
                    account_id=account.id,
                    remote_id=user_id,
                    display_name=display,
                    is_self=user_id == self_id,
                )
    return tuple(conversations), tuple(contacts.values())
