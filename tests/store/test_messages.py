"""MessageRepo: dedupe by constraint, two linked accounts, echo matching, edits, deletes and history."""

from __future__ import annotations

import pytest

from msgr_bridge.schema import Attachment, Delete, Edit, Mention, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import MessageRepo, OutboxAction, OutboxRepo
from msgr_bridge.store.repos.message_inserts import insert_batch_in
from tests.store.store_helpers import NETWORK, at, message

pytestmark = pytest.mark.usefixtures("accounts")


async def test_a_batch_is_stored_once_and_read_back(db: Database) -> None:
    repo = MessageRepo(db)
    rich = message(
        "m1",
        formatted="<b>hi</b>",
        attachments=(Attachment(name="a.png", mime_type="image/png", size=3),),
        mentions=(Mention(user_id="bob", offset=0, length=3),),
        reply_to="m0",
        thread_id="t1",
    )
    async with db.session() as s:
        outcomes = await repo.insert_batch(s, [rich, message("m2")])
    assert [o.created for o in outcomes] == [True, True]
    assert outcomes[0].message_id < outcomes[1].message_id
    got = await repo.get_by_remote(NETWORK, "room-1", "m1")
    assert got is not None
    assert got.to_message("acct-a") == rich


async def test_replaying_a_batch_creates_nothing(db: Database) -> None:
    repo = MessageRepo(db)
    batch = [message(f"m{i}") for i in range(5)]
    async with db.session() as s:
        first = await repo.insert_batch(s, batch)
    async with db.session() as s:
        again = await repo.insert_batch(s, batch)
    assert [o.message_id for o in again] == [o.message_id for o in first]
    assert not any(o.created or o.linked_account for o in again)
    assert len(await repo.history(NETWORK, "room-1", limit=100)) == 5


async def test_duplicates_inside_one_batch_are_stored_once(db: Database) -> None:
    repo = MessageRepo(db)
    async with db.session() as s:
        outcomes = await repo.insert_batch(s, [message("m1"), message("m1"), message("m2")])
    assert [o.created for o in outcomes] == [True, False, True]
    assert [o.linked_account for o in outcomes] == [True, False, True]
    assert outcomes[0].message_id == outcomes[1].message_id


async def test_the_same_group_message_through_two_accounts_is_stored_once_and_linked_to_both(
    db: Database,
) -> None:
    repo = MessageRepo(db)
    async with db.session() as s:
        (via_a,) = await repo.insert_batch(s, [message("g1", account="acct-a")])
    async with db.session() as s:
        (via_b,) = await repo.insert_batch(s, [message("g1", account="acct-b")])
    assert via_a.created and via_a.linked_account
    assert not via_b.created and via_b.linked_account
    assert via_a.message_id == via_b.message_id
    assert await repo.accounts_for(via_a.message_id) == ["acct-a", "acct-b"]
    assert [m.remote_id for m in await repo.history(NETWORK, "room-1", account_id="acct-b")] == ["g1"]


async def test_history_marks_what_the_reading_account_sent_as_its_own(db: Database) -> None:
    """Issue #10 item 9: history said ``is_self: false`` for our own sends (the event stream said true)."""
    repo = MessageRepo(db)
    by_alice = message("g1", sender=Sender(user_id="alice", is_self=True))
    by_bob = message("g2", account="acct-b", sender=Sender(user_id="bob", is_self=True))
    async with db.session() as s:
        await repo.insert_batch(s, [by_alice, message("g1", account="acct-b"), by_bob])
    async with db.session() as s:
        await repo.insert_batch(s, [message("g2", account="acct-a", sender=Sender(user_id="bob"))])
    seen_by_a = {
        m.remote_id: m.sender.is_self for m in await repo.history(NETWORK, "room-1", account_id="acct-a")
    }
    seen_by_b = {
        m.remote_id: m.sender.is_self for m in await repo.history(NETWORK, "room-1", account_id="acct-b")
    }
    assert seen_by_a == {"g1": True, "g2": False}
    assert seen_by_b == {"g1": False, "g2": True}


async def test_parts_of_one_remote_message_are_distinct(db: Database) -> None:
    repo = MessageRepo(db)
    async with db.session() as s:
        outcomes = await repo.insert_batch(s, [message("long", part=0), message("long", part=1)])
    assert all(o.created for o in outcomes)
    part1 = await repo.get_by_remote(NETWORK, "room-1", "long", part=1)
    assert part1 is not None and part1.part == 1


async def test_echo_of_our_own_send_is_matched_by_txn_id(db: Database) -> None:
    entry, _ = await OutboxRepo(db).create("default", "acct-a", "room-1", OutboxAction.SEND, {"text": "hi"})
    repo = MessageRepo(db)
    match = await repo.match_txn(entry.txn_id)
    assert match is not None and match.outbox_id == entry.id and match.message_id is None
    assert await repo.match_txn("someone-elses-txn") is None

    async with db.session() as s:
        (stored,) = await repo.insert_batch(s, [message("r1", txn_id=entry.txn_id)])
    # The echo arrives under a new remote id but with our txn id: the txn UNIQUE catches it.
    async with db.session() as s:
        (echo,) = await repo.insert_batch(s, [message("r1-echo", txn_id=entry.txn_id)])
    assert not echo.created and echo.message_id == stored.message_id
    match = await repo.match_txn(entry.txn_id)
    assert match is not None and match.message_id == stored.message_id
    row = await repo.get(stored.message_id)
    assert row is not None and row.outbox_id == entry.id


def _edit(text: str, *, version: int | None = None, seconds: float = 10) -> Edit:
    return Edit(
        network=NETWORK,
        account_id="acct-a",
        conversation_id="room-1",
        target_id="m1",
        sender=Sender(user_id="alice"),
        text=text,
        version=version,
        timestamp=at(seconds),
    )


async def test_edits_out_of_order_keep_the_newest_by_version(db: Database) -> None:
    repo = MessageRepo(db)
    async with db.session() as s:
        await repo.insert_batch(s, [message("m1")])
        assert (await repo.apply_edit(s, _edit("third", version=3))).applied
        stale = await repo.apply_edit(s, _edit("second", version=2, seconds=20))
    assert not stale.applied and stale.target_exists
    got = await repo.get_by_remote(NETWORK, "room-1", "m1")
    assert got is not None and (got.text, got.edit_version) == ("third", 3)


async def test_edits_out_of_order_keep_the_newest_by_timestamp(db: Database) -> None:
    repo = MessageRepo(db)
    async with db.session() as s:
        await repo.insert_batch(s, [message("m1")])
        assert (await repo.apply_edit(s, _edit("later", seconds=20))).applied
        assert not (await repo.apply_edit(s, _edit("earlier", seconds=10))).applied
    got = await repo.get_by_remote(NETWORK, "room-1", "m1")
    assert got is not None and got.text == "later" and got.edited_at == at(20)


async def test_an_edit_before_its_message_reports_a_missing_target(db: Database) -> None:
    async with db.session() as s:
        outcome = await MessageRepo(db).apply_edit(s, _edit("too early"))
    assert (outcome.applied, outcome.target_exists) == (False, False)


async def test_delete_tombstones_all_parts_and_wins_over_later_edits(db: Database) -> None:
    repo = MessageRepo(db)
    deletion = Delete(
        network=NETWORK, account_id="acct-a", conversation_id="room-1", target_id="m1", timestamp=at(5)
    )
    async with db.session() as s:
        await repo.insert_batch(s, [message("m1", part=0), message("m1", part=1)])
        assert (await repo.apply_delete(s, deletion)).applied
        again = await repo.apply_delete(s, deletion)
        edit_after = await repo.apply_edit(s, _edit("resurrect", seconds=30))
    assert (again.applied, again.target_exists) == (False, True)
    assert (edit_after.applied, edit_after.target_exists) == (False, True)
    for part in (0, 1):
        got = await repo.get_by_remote(NETWORK, "room-1", "m1", part=part)
        assert got is not None and got.deleted_at == at(5) and got.text == ""


async def test_delete_of_an_unknown_message(db: Database) -> None:
    deletion = Delete(network=NETWORK, account_id="acct-a", conversation_id="room-1", target_id="nope")
    async with db.session() as s:
        outcome = await MessageRepo(db).apply_delete(s, deletion)
    assert (outcome.applied, outcome.target_exists) == (False, False)


async def test_history_pages_backwards_by_cursor(db: Database) -> None:
    repo = MessageRepo(db)
    async with db.session() as s:
        await repo.insert_batch(s, [message(f"m{i}") for i in range(7)])
        await repo.insert_batch(s, [message("other", conversation="room-2")])
    first = await repo.history(NETWORK, "room-1", limit=3)
    second = await repo.history(NETWORK, "room-1", before_cursor=first[-1].id, limit=3)
    third = await repo.history(NETWORK, "room-1", before_cursor=second[-1].id, limit=3)
    names = [m.remote_id for page in (first, second, third) for m in page]
    assert names == [f"m{i}" for i in range(6, -1, -1)]
    with pytest.raises(ValueError):
        await repo.history(NETWORK, "room-1", limit=0)


async def test_a_failed_batch_leaves_nothing_behind(db: Database) -> None:
    repo = MessageRepo(db)
    with pytest.raises(Exception, match="boom"):
        async with db.session() as s:
            await repo.insert_batch(s, [message("m1")])
            raise RuntimeError("boom")
    assert await repo.get_by_remote(NETWORK, "room-1", "m1") is None


async def test_a_large_batch_goes_in_one_call(db: Database) -> None:
    repo = MessageRepo(db)
    batch = [message(f"m{i}", account="acct-a" if i % 2 else "acct-b") for i in range(2500)]
    async with db.session() as s:
        outcomes = await repo.insert_batch(s, batch)
    assert sum(o.created for o in outcomes) == 2500
    assert len({o.message_id for o in outcomes}) == 2500


async def test_a_batch_in_a_transact_body_dedupes_links_and_finds_echoes(db: Database) -> None:
    """``insert_batch_in`` as inbound and outbound recording run it (``Database.transact``: on SQLite the
    writer's own connection, one multi-row INSERT per chunk of messages): the outcomes of a session's."""
    repo = MessageRepo(db)
    async with db.session() as s:
        stored, sent = await repo.insert_batch(s, [message("old"), message("r-sent", txn_id="txn-1")])
    batch = [message(f"n{i}") for i in range(70)]  # 64 + 4 + 2 rows: three statements on SQLite
    batch += [
        message("old"),  # stored before: a duplicate
        message("n3"),  # twice in the batch
        message("old", account="acct-b"),  # a second account's copy: linked
        message("r-echo", txn_id="txn-1"),  # the echo of our send, under the network's own id
    ]
    outcomes = await db.transact(lambda conn: insert_batch_in(conn, batch), short=False)
    new, (old, again, old_b, echo) = outcomes[:70], outcomes[70:]
    assert all(o.created and o.linked_account for o in new)
    ids = [o.message_id for o in new]
    assert ids == sorted(ids) and ids[0] > sent.message_id  # new ids grow in the order of the batch
    assert (old.message_id, old.created, old.linked_account) == (stored.message_id, False, False)
    assert (again.message_id, again.created, again.linked_account) == (ids[3], False, False)
    assert (old_b.message_id, old_b.created, old_b.linked_account) == (stored.message_id, False, True)
    assert (echo.message_id, echo.created) == (sent.message_id, False)
    assert len(await repo.history(NETWORK, "room-1", limit=100)) == 72


async def test_one_transaction_id_stored_under_two_keys_at_once_resolves_to_the_first(db: Database) -> None:
    """Our send recorded while the network's echo of it (another remote id, the same transaction id) is
    stored by another transaction: on PostgreSQL the second INSERT waited for the first and then failed on
    the txn_id constraint, crashing the writer (seen in the chaos test). It must find the first row."""
    if db.is_sqlite:
        pytest.skip("SQLite serializes writers: the second sees the first row before it inserts")
    import anyio

    repo = MessageRepo(db)
    sent, echo = message("r-sent", txn_id="txn-1"), message("r-echo", txn_id="txn-1")
    result: list[object] = []

    async def store_echo() -> None:
        async with db.session() as s:
            result.extend(await repo.insert_batch(s, [echo]))

    async with anyio.create_task_group() as tg, db.session() as s:
        (first,) = await repo.insert_batch(s, [sent])
        tg.start_soon(store_echo)
        await anyio.sleep(0.3)  # the echo's INSERT now waits for this transaction's txn_id
        # committed: the echo's transaction goes on
    (outcome,) = result
    assert first.created and outcome.message_id == first.message_id  # type: ignore[attr-defined]
    assert not outcome.created  # type: ignore[attr-defined]
