"""Reactions, read markers, memberships, contacts and conversations: idempotent snapshot upserts."""

from __future__ import annotations

import pytest

from msgr_bridge.schema import (
    Contact,
    Conversation,
    ConversationKind,
    MembershipAction,
    MembershipChange,
    Reaction,
    ReactionAction,
    ReadReceipt,
    Sender,
)
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import (
    ChannelRepo,
    ContactRepo,
    MembershipRepo,
    MessageRepo,
    ReactionRepo,
    ReadMarkerRepo,
)
from tests.store.store_helpers import NETWORK, at, message

pytestmark = pytest.mark.usefixtures("accounts")


def _reaction(emoji: str, action: ReactionAction = ReactionAction.ADD, target: str = "m1") -> Reaction:
    return Reaction(
        network=NETWORK,
        account_id="acct-a",
        conversation_id="room-1",
        target_id=target,
        sender=Sender(user_id="bob"),
        emoji=emoji,
        action=action,
    )


async def test_reactions_add_once_and_remove(db: Database) -> None:
    repo = ReactionRepo(db)
    async with db.session() as s:
        missing = await repo.apply(s, _reaction("👍"))
        (stored,) = await MessageRepo(db).insert_batch(s, [message("m1")])
        added = await repo.apply(s, _reaction("👍"))
        twice = await repo.apply(s, _reaction("👍"))
        await repo.apply(s, _reaction("🎉"))
    assert (missing.target_exists, missing.changed) == (False, False)
    assert added.changed and added.message_id == stored.message_id
    assert twice.target_exists and not twice.changed
    assert [r.emoji for r in await repo.list_for(stored.message_id)] == ["👍", "🎉"]
    async with db.session() as s:
        assert (await repo.apply(s, _reaction("👍", ReactionAction.REMOVE))).changed
        assert not (await repo.apply(s, _reaction("👍", ReactionAction.REMOVE))).changed
    assert [r.emoji for r in await repo.list_for(stored.message_id)] == ["🎉"]


def _receipt(up_to: str, seconds: float) -> ReadReceipt:
    return ReadReceipt(
        network=NETWORK,
        account_id="acct-a",
        conversation_id="room-1",
        up_to_id=up_to,
        reader=Sender(user_id="bob"),
        timestamp=at(seconds),
    )


async def test_read_markers_only_move_forward(db: Database) -> None:
    repo = ReadMarkerRepo(db)
    async with db.session() as s:
        assert await repo.upsert(s, _receipt("m5", 50))
        assert not await repo.upsert(s, _receipt("m3", 30))
        assert not await repo.upsert(s, _receipt("m5", 60))
        assert await repo.upsert(s, _receipt("m7", 70))
    assert await repo.get("acct-a", "room-1", "bob") == ("m7", at(70))
    assert await repo.get("acct-a", "room-1", "carol") is None


def _change(user: str, action: MembershipAction, new_name: str | None = None) -> MembershipChange:
    return MembershipChange(
        network=NETWORK,
        account_id="acct-a",
        conversation_id="room-1",
        user=Sender(user_id=user),
        action=action,
        new_name=new_name,
    )


async def test_membership_events_and_snapshots(db: Database) -> None:
    repo = MembershipRepo(db)
    async with db.session() as s:
        assert await repo.apply(s, _change("bob", MembershipAction.JOIN))
        assert not await repo.apply(s, _change("bob", MembershipAction.JOIN))
        assert await repo.apply(s, _change("bob", MembershipAction.RENAME, new_name="Robert"))
        assert await repo.apply(s, _change("carol", MembershipAction.JOIN))
        diff = await repo.replace_snapshot(s, "acct-a", "room-1", ["bob", "dave"])
    assert (diff.joined, diff.left) == (("dave",), ("carol",))
    assert await repo.members("acct-a", "room-1") == ["bob", "dave"]
    async with db.session() as s:
        again = await repo.replace_snapshot(s, "acct-a", "room-1", ["dave", "bob"])
        assert await repo.apply(s, _change("dave", MembershipAction.KICK))
    assert (again.joined, again.left) == ((), ())
    assert await repo.members("acct-a", "room-1") == ["bob"]


async def test_contact_snapshots_are_idempotent(db: Database) -> None:
    repo = ContactRepo(db)
    snapshot = [
        Contact(network=NETWORK, account_id="acct-a", remote_id="bob", display_name="Bob"),
        Contact(network=NETWORK, account_id="acct-a", remote_id="me", display_name="Me", is_self=True),
    ]
    async with db.session() as s:
        assert await repo.upsert(s, snapshot) == 2
    async with db.session() as s:
        assert await repo.upsert(s, snapshot) == 0
        changed = [snapshot[0].model_copy(update={"display_name": "Robert"}), snapshot[1]]
        assert await repo.upsert(s, changed) == 1
    assert [(c.remote_id, c.display_name) for c in await repo.list("acct-a")] == [
        ("bob", "Robert"),
        ("me", "Me"),
    ]


async def test_conversation_snapshots_are_idempotent(db: Database) -> None:
    repo = ChannelRepo(db)
    room = Conversation(network=NETWORK, account_id="acct-a", remote_id="room-1", name="Room", topic="t")
    direct = Conversation(
        network=NETWORK, account_id="acct-a", remote_id="dm-bob", type=ConversationKind.DIRECT
    )
    async with db.session() as s:
        assert await repo.upsert(s, [room, direct, room]) == 2
    async with db.session() as s:
        assert await repo.upsert(s, [room, direct]) == 0
        assert await repo.upsert(s, [room.model_copy(update={"topic": None})]) == 1
        await MembershipRepo(db).replace_snapshot(s, "acct-a", "room-1", ["bob"])
    got = await repo.get("acct-a", "room-1")
    assert got is not None and got.topic is None and got.name == "Room" and got.members == ("bob",)
    assert [c.remote_id for c in await repo.list("acct-a")] == ["dm-bob", "room-1"]
    assert await repo.get("acct-b", "room-1") is None
