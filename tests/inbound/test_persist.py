"""Persisting a batch also lists the conversations its messages are in (issue #10, item 10), on SQLite and
PostgreSQL."""

from __future__ import annotations

from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.schema import Account, Conversation, ConversationKind, Message, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.entities import ChannelRepo


def _msg(account: str, conv: str, remote_id: str, sender: str, *, is_self: bool = False) -> Message:
    return Message(
        network="xmpp",
        account_id=account,
        conversation_id=conv,
        remote_id=remote_id,
        sender=Sender(user_id=sender, is_self=is_self),
        text=remote_id,
    )


async def test_conversations_known_only_through_messages_are_listed(db: Database) -> None:
    for acct, me in (("acct-a", "a@x"), ("acct-b", "b@x")):
        await AccountRepo(db).create(Account(id=acct, network="xmpp", remote_user_id=me))
    store = DatabaseInboundStore(db)
    channels = ChannelRepo(db)
    async with db.session() as s:  # a room a snapshot named, with its real name
        await channels.upsert(
            s, [Conversation(network="xmpp", account_id="acct-a", remote_id="room@muc", name="Room")]
        )
    await store.persist(
        "default",
        [
            _msg("acct-a", "bob@x", "m1", "bob@x"),  # a 1:1 chat: the peer is the conversation
            _msg("acct-a", "bob@x", "m2", "bob@x"),
            _msg("acct-a", "carol@x", "m3", "a@x", is_self=True),  # a 1:1 chat we started
            _msg("acct-a", "room@muc", "m4", "room@muc/dave"),
            _msg("acct-b", "room@muc", "m4", "room@muc/dave"),  # a second account's copy
        ],
        [],
    )
    listed = {c.remote_id: c for c in await channels.list("acct-a")}
    assert set(listed) == {"bob@x", "carol@x", "room@muc"}
    assert listed["bob@x"].type is ConversationKind.DIRECT
    assert listed["room@muc"].name == "Room"  # an existing row is left as the snapshot made it
    assert [c.remote_id for c in await channels.list("acct-b")] == ["room@muc"]

    # the peer answers in the chat we started: the guess becomes direct; a snapshot has the last word
    await store.persist("default", [_msg("acct-a", "carol@x", "m5", "carol@x")], [])
    assert {c.remote_id: c.type for c in await channels.list("acct-a")}["carol@x"] is ConversationKind.DIRECT
    async with db.session() as s:
        await channels.upsert(
            s,
            [
                Conversation(
                    network="xmpp", account_id="acct-a", remote_id="bob@x", type=ConversationKind.GROUP
                )
            ],
        )
    await store.persist("default", [_msg("acct-a", "bob@x", "m6", "bob@x")], [])
    assert {c.remote_id: c.type for c in await channels.list("acct-a")}["bob@x"] is ConversationKind.GROUP
