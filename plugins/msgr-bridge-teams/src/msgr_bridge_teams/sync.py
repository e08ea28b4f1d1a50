"""``sync_state`` of the Teams connector: chats and followed channels with their members, and the changes
missed since the committed cursors as history (the core stores the returned cursor after committing it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from msgr_bridge import Contact, Conversation, SyncSnapshot
from msgr_bridge.schema import ConversationKind

from .channels import channel_changes
from .convert import NETWORK
from .poll import chat_changes

if TYPE_CHECKING:
    from .connector import TeamsConnector

MAX_CHATS = 200
"""Chats whose members are listed per sync (each costs one request)."""


async def snapshot(c: TeamsConnector, cursor: str | None) -> SyncSnapshot:
    try:
        given = json.loads(cursor) if cursor else {}
    except ValueError:
        given = {}
    given = given if isinstance(given, dict) else {}
    c.merge_cursors(given)
    for conv, entry in given.items():
        if isinstance(entry, dict) and conv not in c.channel_entries:
            c.channel_entries[conv] = dict(entry)
    account = c.ctx.account.id
    contacts: dict[str, Contact] = {}
    conversations: list[Conversation] = []
    history: list[dict[str, Any]] = []
    for chat in (await c.list_chats())[:MAX_CHATS]:
        conv = chat["id"]
        members = await c.graph.pages(f"/chats/{conv}/members", {"$top": "50"}, 1)
        ids = []
        for m in members:
            user = m.get("userId")
            if isinstance(user, str):
                ids.append(user)
                name = m.get("displayName")
                contacts[user] = Contact(
                    network=NETWORK,
                    account_id=account,
                    remote_id=user,
                    display_name=name if isinstance(name, str) else None,
                    is_self=user == c.self_id,
                )
        kind = ConversationKind.DIRECT if chat.get("chatType") == "oneOnOne" else ConversationKind.GROUP
        topic = chat.get("topic")
        conversations.append(
            Conversation(
                network=NETWORK,
                account_id=account,
                remote_id=conv,
                type=kind,
                name=topic if isinstance(topic, str) else None,
                members=tuple(ids),
            )
        )
        found, newest = await chat_changes(
            c.fetch,
            conv,
            c.cursors.get(conv),
            c.known,
            c.self_id,
            c.sent,
            first_page_only=conv not in c.cursors,
        )
        history += [payload for payload, _ in found]
        if newest is not None:
            c.cursors[conv] = max(newest, c.cursors.get(conv, ""))
    for conv in c.settings.channels:
        conversations.append(
            Conversation(network=NETWORK, account_id=account, remote_id=conv, type=ConversationKind.CHANNEL)
        )
        found_in_channel, entry = await channel_changes(
            c.graph, conv, c.channel_entries.get(conv, {}), c.known, c.self_id, c.sent, c.settle
        )
        history += found_in_channel
        c.channel_entries[conv] = entry
    cursor_out: dict[str, Any] = {**c.cursors, **c.channel_entries}
    return SyncSnapshot(
        contacts=tuple(contacts.values()),
        conversations=tuple(conversations),
        history=tuple(history),
        cursor=json.dumps(cursor_out, sort_keys=True),
    )
