"""The full-text index on both backends: kept in step with inserts, edits, deletes and row deletes in the
writing transaction; filters and scopes of ``SearchRepo``; migration 0008 indexes existing rows and goes
down and up again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from msgr_bridge.schema import Delete, Edit, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import MessageRepo
from msgr_bridge.store.repos import search as search_repo
from msgr_bridge.store.repos.message_inserts import insert_batch_in
from msgr_bridge.store.repos.search import SearchFilters, SearchRepo
from msgr_bridge.store.search_terms import parse_query
from tests.store.store_helpers import NETWORK, T0, at, message

BOTH = ("acct-a", "acct-b")


async def found(db: Database, q: str, **filters: object) -> list[str]:
    f = SearchFilters(**{"accounts": BOTH, **filters})  # type: ignore[arg-type]
    hits = await SearchRepo(db).search(parse_query(q), f, limit=50)
    return [h.message.remote_id for h in hits]


async def store(db: Database, *messages: object) -> None:
    async with db.session() as s:
        await MessageRepo(db).insert_batch(s, list(messages))  # type: ignore[arg-type]


@pytest.mark.usefixtures("accounts")
async def test_inserts_edits_and_deletes_are_indexed_in_their_transaction(db: Database) -> None:
    repo = MessageRepo(db)
    await store(db, message("m1", text="lunch at noon"), message("m2", text="Lunch tomorrow?"))
    assert await found(db, "lunch") == ["m2", "m1"]  # newest first

    edit = Edit(
        network=NETWORK, account_id="acct-a", conversation_id="room-1", target_id="m1",
        timestamp=at(5), text="dinner at eight", sender=Sender(user_id="alice"),
    )  # fmt: skip
    with pytest.raises(RuntimeError):  # a failed transaction leaves the index as it was
        async with db.session() as s:
            assert (await repo.apply_edit(s, edit)).applied
            raise RuntimeError("rolled back")
    assert await found(db, "lunch") == ["m2", "m1"] and await found(db, "dinner") == []

    async with db.session() as s:
        await repo.apply_edit(s, edit)
    assert await found(db, "lunch") == ["m2"] and await found(db, "dinner") == ["m1"]

    deletion = Delete(
        network=NETWORK, account_id="acct-a", conversation_id="room-1", target_id="m2",
        timestamp=at(6), sender=Sender(user_id="alice"),
    )  # fmt: skip
    async with db.session() as s:
        await repo.apply_delete(s, deletion)
    assert await found(db, "lunch") == [] and await found(db, "tomorrow") == []

    async with db.session() as s:  # a removed row (retention) leaves the index too
        await s.execute(text("DELETE FROM messages WHERE remote_id = 'm1'"))
    assert await found(db, "dinner") == []
    if db.is_sqlite:
        async with db.session() as s:  # the external-content index agrees with its table
            await s.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')"))


@pytest.mark.usefixtures("accounts")
async def test_a_batch_is_indexed_in_a_few_segments_not_one_per_message(db: Database) -> None:
    """SQLite: FTS5 writes the words it holds as a new index segment at each statement savepoint, and an
    INSERT that fires a trigger opens one: a batch inserted one statement per message wrote one segment per
    message, which FTS5 then merged again (most of a burst's cost, bench/everyday.py). The writer's batch
    path (``Database.transact``, as inbound and outbound recording run it) inserts a chunk per statement."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL computes its search column in the statement that writes the row")
    segments = text("SELECT count(*) FROM messages_fts_data")
    async with db.session() as s:  # no merging: what a batch writes is what it adds
        for option, value in (("automerge", 0), ("crisismerge", 1000)):
            await s.execute(
                text(f"INSERT INTO messages_fts(messages_fts, rank) VALUES ('{option}', {value})")
            )
        before = await s.scalar(segments)
    batch = [message(f"m{i}", text=f"word{i} in a batch") for i in range(200)]
    outcomes = await db.transact(lambda conn: insert_batch_in(conn, batch), short=False)
    async with db.session() as s:
        added = (await s.scalar(segments) or 0) - (before or 0)
    assert added <= 10, f"{added} index records for a batch of 200 (one segment per message: 200 and more)"
    assert all(o.created for o in outcomes)
    assert await found(db, "word0") == ["m0"] and await found(db, "word199") == ["m199"]
    assert len(await found(db, "batch")) == 50  # the page is full: every message is in the index
    async with db.session() as s:
        await s.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')"))


@pytest.mark.usefixtures("accounts")
async def test_filters_scopes_and_pages(db: Database) -> None:
    bob = Sender(user_id="bob", display_name="Bob")
    await store(
        db,
        message("a1", text="budget draft", timestamp=T0),
        message("a2", text="budget final", timestamp=T0 + timedelta(days=2), sender=bob),
        message("b1", account="acct-b", conversation="room-2", text="budget secret", timestamp=T0),
        message("g1", account="acct-b", text="budget group", timestamp=T0 + timedelta(days=1)),
    )
    await store(db, message("g1", account="acct-a", text="budget group", timestamp=T0 + timedelta(days=1)))
    assert await found(db, "budget") == ["g1", "b1", "a2", "a1"]
    assert await found(db, "budget", accounts=("acct-a",)) == ["g1", "a2", "a1"]
    assert await found(db, "budget", accounts=("acct-b",)) == ["g1", "b1"]
    assert await found(db, "budget", conversation_id="room-1") == ["g1", "a2", "a1"]
    assert await found(db, "budget", conversation_id="room-2", accounts=("acct-a",)) == []
    assert await found(db, "budget", conversation_id="room-2", networks=(NETWORK, "x")) == ["b1"]
    assert await found(db, "budget", sender_id="bob") == ["a2"]
    assert await found(db, "budget", networks=("other",)) == []
    assert await found(db, "budget", since=T0 + timedelta(days=1)) == ["g1", "a2"]
    assert await found(db, "budget", until=T0 + timedelta(days=1)) == ["b1", "a1"]
    assert await found(db, "budget", since=T0 + timedelta(days=1), conversation_id="room-1") == ["g1", "a2"]
    hits = await SearchRepo(db).search(parse_query("budget"), SearchFilters(accounts=BOTH), limit=2)
    assert [h.message.remote_id for h in hits] == ["g1", "b1"]
    assert hits[0].account_id == "acct-a"  # seen by both: the first readable account answers
    rest = await found(db, "budget", before_id=hits[-1].message.id)
    assert rest == ["a2", "a1"]
    assert await found(db, "budget", accounts=()) == []


@pytest.mark.usefixtures("accounts")
async def test_words_phrases_and_prefixes(db: Database) -> None:
    await store(
        db,
        message("m1", text="Write to alice@example.com about the release-notes"),
        message("m2", text="notes about the release"),
        message("m3", text="deployment done; don't redeploy"),
    )
    assert await found(db, "release notes") == ["m2", "m1"]
    assert await found(db, '"release notes"') == ["m1"]
    assert await found(db, "alice@example.com") == ["m1"]
    assert await found(db, "deploy*") == ["m3"]
    assert await found(db, "don't") == ["m3"]
    assert await found(db, "NOT release") == []  # NOT is a word here, not an operator
    assert await found(db, '"notes about" release') == ["m2"]


async def test_migration_0008_indexes_existing_rows_and_goes_down_and_up(empty_db: Database) -> None:
    await empty_db.migrate("0007")
    async with empty_db.session() as s:
        await s.execute(text("INSERT INTO tenants (id, created_at) VALUES ('default', CURRENT_TIMESTAMP)"))
        await s.execute(
            text(
                "INSERT INTO bridge_accounts (id, tenant, network, remote_user_id, settings,"
                " capabilities, state, created_at, updated_at) VALUES ('acct-a', 'default', 'loop',"
                " 'alice', '{}', '{}', 'stopped', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    await store(empty_db, message("old", text="written before the index existed"))
    await empty_db.migrate("0008")
    assert await found(empty_db, "existed", accounts=("acct-a",)) == ["old"]
    await empty_db.downgrade("0007")
    async with empty_db.session() as s:
        if empty_db.is_sqlite:
            names = "SELECT name FROM sqlite_master WHERE name LIKE 'messages_fts%'"
        else:
            names = "SELECT column_name FROM information_schema.columns WHERE column_name = 'search_vector'"
        assert (await s.execute(text(names))).all() == []
    await store(empty_db, message("mid", text="written while the index was gone"))
    await empty_db.migrate()
    assert await found(empty_db, "written", accounts=("acct-a",)) == ["mid", "old"]


@pytest.mark.usefixtures("accounts")
async def test_a_conversation_filter_finds_the_same_with_common_words(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store(
        db,
        message("m1", text="standup notes"),
        message("m2", conversation="room-2", text="standup moved"),
        message("m3", text="standup done"),
        message("m4", text="nothing here"),
    )
    small = await found(db, "standup", conversation_id="room-1", networks=(NETWORK,))
    monkeypatch.setattr(search_repo, "COMMON_MATCHES", 1)  # SQLite: probe the index message by message
    common = await found(db, "standup", conversation_id="room-1", networks=(NETWORK,))
    assert small == common == ["m3", "m1"]
