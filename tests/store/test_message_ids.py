"""Message id lookups for one account, on both backends: remote id to canonical and back, by transaction
id, and nothing of another account's conversations or another network."""

from __future__ import annotations

import pytest

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import AccountRepo, MessageRepo
from msgr_bridge.store.repos.message_ids import AccountMessageIds
from tests.store.store_helpers import message

pytestmark = pytest.mark.usefixtures("accounts")


async def test_remote_to_canonical_and_back_for_the_accounts_conversations(db: Database) -> None:
    await AccountRepo(db).create(Account(id="acct-x", network="other", remote_user_id="alice"))
    repo = MessageRepo(db)
    async with db.session() as s:
        first, reply, part1, theirs, shared, elsewhere = await repo.insert_batch(
            s,
            [
                message("m1", txn_id="txn-1"),
                message("m2", reply_to="m1"),
                message("m3", part=1),
                message("m9", account="acct-b", conversation="room-b"),
                message("m5", account="acct-b"),
                message("m1", account="acct-x").model_copy(update={"network": "other"}),
            ],
        )
        await repo.insert_batch(s, [message("m5", account="acct-a")])  # acct-a sees the shared one too
    ids = AccountMessageIds(db, "acct-a", "loop")
    ref = await ids.by_remote("room-1", "m1")
    assert ref is not None and ref.message_id == first.message_id and ref.txn_id == "txn-1"
    assert ref.sender_id == "alice" and not ref.deleted
    back = await ids.by_id(reply.message_id)
    assert back is not None and (back.remote_id, back.reply_to) == ("m2", "m1")
    assert (await ids.by_remote("room-1", "m3", part=1)) is not None
    assert await ids.by_remote("room-1", "m3") is None  # part 0 was never stored
    assert (await ids.by_txn("txn-1")) == ref
    assert await ids.by_txn("txn-none") is None
    # another account's conversation, and the same remote id on another network: not this account's
    assert await ids.by_remote("room-b", "m9") is None
    assert await ids.by_id(theirs.message_id) is None
    assert await ids.by_id(elsewhere.message_id) is None
    shared_ref = await ids.by_remote("room-1", "m5")
    assert shared_ref is not None and shared_ref.message_id == shared.message_id
    assert (await AccountMessageIds(db, "acct-b", "loop").by_remote("room-b", "m9")) is not None
    assert part1.created
