"""Snapshots of the account's joined rooms (conversations) and their members (contacts).

A room listed in the user's ``m.direct`` account data is a direct conversation, named after the other
member when it has no ``m.room.name``; every other room is a group. One ``/state`` call per room gives the
name, topic and members at once.
"""

from __future__ import annotations

from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.types import EventType

from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import Account, Contact, Conversation, ConversationKind

from . import client as wire
from .timeline import Timeline


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
