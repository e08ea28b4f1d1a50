"""OutboxRepo: idempotent creation, claims with a durable sent-marker, retries, dead letters, recovery."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from msgr_bridge.outbound.requests import OutboxOps, blockers_query
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import OutboxAction, OutboxRepo, OutboxState
from msgr_bridge.store.types import utcnow

pytestmark = pytest.mark.usefixtures("accounts")


async def _create(repo: OutboxRepo, key: str | None = None, text: str = "hi") -> tuple[str, bool]:
    entry, created = await repo.create("default", "acct-a", "room-1", OutboxAction.SEND, {"text": text}, key)
    return entry.id, created


async def test_a_known_idempotency_key_returns_the_existing_entry(db: Database) -> None:
    repo = OutboxRepo(db)
    first, created = await _create(repo, "req-1")
    again, created_again = await _create(repo, "req-1", text="different body")
    assert created and not created_again and again == first
    other, created_other = await _create(repo, "req-2")
    assert created_other and other != first
    assert len(await repo.list()) == 2


async def test_the_same_key_in_another_tenant_is_another_entry(db: Database) -> None:
    repo = OutboxRepo(db)
    a, _ = await repo.create("default", "acct-a", "room-1", OutboxAction.SEND, {}, "k")
    b, created = await repo.create("other-tenant", "acct-a", "room-1", OutboxAction.SEND, {}, "k")
    assert created and a.id != b.id and a.txn_id != b.txn_id


async def test_entries_without_a_key_are_all_new(db: Database) -> None:
    repo = OutboxRepo(db)
    ids = {(await _create(repo))[0] for _ in range(3)}
    assert len(ids) == 3


async def test_claim_marks_sending_and_opens_an_attempt_before_returning(db: Database) -> None:
    repo = OutboxRepo(db)
    first, _ = await _create(repo, "a")
    second, _ = await _create(repo, "b")
    claimed = await repo.claim_due(limit=10)
    assert [e.id for e in claimed] == [first, second]
    assert all(e.state is OutboxState.SENDING and e.attempts == 1 for e in claimed)
    # The marker is committed: a fresh read (another connection) sees it, and nothing is claimable twice.
    stored = await repo.get(first)
    assert stored is not None and stored.state is OutboxState.SENDING
    (attempt,) = await repo.attempts(first)
    assert attempt.attempt == 1 and attempt.finished_at is None
    assert await repo.claim_due(limit=10) == []


async def test_claim_respects_limit_and_due_time(db: Database) -> None:
    repo = OutboxRepo(db)
    later = utcnow() + timedelta(hours=1)
    await repo.create("default", "acct-a", "room-1", OutboxAction.SEND, {}, "later", not_before=later)
    for key in ("a", "b", "c"):
        await _create(repo, key)
    assert len(await repo.claim_due(limit=2)) == 2
    assert len(await repo.claim_due(limit=10)) == 1
    assert [e.idempotency_key for e in await repo.claim_due(now=later, limit=10)] == ["later"]


async def test_sent_then_delivered_then_read(db: Database) -> None:
    repo = OutboxRepo(db)
    entry_id, _ = await _create(repo)
    await repo.claim_due()
    sent = await repo.mark_sent(entry_id, "remote-1")
    assert sent is not None and sent.state is OutboxState.SENT and sent.remote_id == "remote-1"
    assert await repo.mark_sent(entry_id, "remote-2") is None
    assert (await repo.mark_status(entry_id, OutboxState.DELIVERED)) is not None
    read = await repo.mark_status(entry_id, OutboxState.READ)
    assert read is not None and read.state is OutboxState.READ
    assert await repo.mark_status(entry_id, OutboxState.DELIVERED) is None
    (attempt,) = await repo.attempts(entry_id)
    assert attempt.outcome == "sent" and attempt.finished_at is not None
    with pytest.raises(ValueError):
        await repo.mark_status(entry_id, OutboxState.SENT)


async def test_transient_failure_is_retried_later_then_dead_lettered(db: Database) -> None:
    repo = OutboxRepo(db)
    entry_id, _ = await _create(repo)
    await repo.claim_due()
    retry_at = utcnow() + timedelta(seconds=30)
    retried = await repo.mark_failed(entry_id, "HTTP 429", retry_at)
    assert retried is not None and retried.state is OutboxState.QUEUED and retried.last_error == "HTTP 429"
    assert await repo.claim_due() == []
    (again,) = await repo.claim_due(now=retry_at)
    assert again.attempts == 2
    dead = await repo.dead_letter(entry_id, "gave up after 2 attempts")
    assert dead is not None and dead.state is OutboxState.DEAD
    assert [a.outcome for a in await repo.attempts(entry_id)] == ["retry", "dead"]
    assert [e.id for e in await repo.list(OutboxState.DEAD)] == [entry_id]


async def test_permanent_failure_then_operator_retry_and_cancel(db: Database) -> None:
    repo = OutboxRepo(db)
    entry_id, _ = await _create(repo)
    await repo.claim_due()
    failed = await repo.mark_failed(entry_id, "message too long")
    assert failed is not None and failed.state is OutboxState.FAILED
    requeued = await repo.requeue(entry_id)
    assert requeued is not None and requeued.state is OutboxState.QUEUED and requeued.attempts == 0
    (claimed,) = await repo.claim_due()
    assert [a.attempt for a in await repo.attempts(entry_id)] == [1, 2]
    assert await repo.cancel(entry_id) is None  # in flight: not cancellable
    await repo.mark_failed(claimed.id, "still too long")
    cancelled = await repo.cancel(entry_id)
    assert cancelled is not None and cancelled.state is OutboxState.CANCELLED
    assert await repo.requeue("no-such-entry") is None


async def test_entries_left_sending_by_a_crash_are_recovered_with_the_same_txn_id(db: Database) -> None:
    repo = OutboxRepo(db)
    entry_id, _ = await _create(repo)
    (claimed,) = await repo.claim_due()
    await repo.mark_on_wire([claimed.id])  # the send was being written when the process died
    # A restart right away must not steal work still in flight elsewhere...
    assert await repo.recover_stuck_sending(older_than=claimed.updated_at) == []
    # ...but entries older than the cut-off are queued again, their open attempt closed as interrupted.
    (recovered,) = await repo.recover_stuck_sending(older_than=utcnow() + timedelta(seconds=1))
    assert recovered.id == entry_id and recovered.state is OutboxState.QUEUED
    assert recovered.txn_id == claimed.txn_id
    (attempt,) = await repo.attempts(entry_id)
    assert attempt.outcome == "interrupted"
    (again,) = await repo.claim_due()
    assert again.txn_id == claimed.txn_id and again.attempts == 2


async def test_a_claim_never_written_is_recovered_as_not_tried(db: Database) -> None:
    """Claimed but not yet on the wire when the process died: nothing can have reached the network, so the
    entry is queued again without an attempt (and without being taken for a possible duplicate)."""
    repo = OutboxRepo(db)
    entry_id, _ = await _create(repo)
    (claimed,) = await repo.claim_due()
    assert claimed.attempts == 1
    (recovered,) = await repo.recover_stuck_sending(older_than=utcnow() + timedelta(seconds=1))
    assert recovered.id == entry_id and recovered.state is OutboxState.QUEUED and recovered.attempts == 0
    assert await repo.attempts(entry_id) == []
    (again,) = await repo.claim_due()
    assert again.txn_id == claimed.txn_id and again.attempts == 1


async def test_lookup_by_txn_id(db: Database) -> None:
    repo = OutboxRepo(db)
    entry, _ = await repo.create(
        "default", "acct-a", "room-1", OutboxAction.REACT, {"emoji": "+1"}, txn_id="t-1"
    )
    found = await repo.get_by_txn("t-1")
    assert found is not None and found.id == entry.id and found.action is OutboxAction.REACT
    assert await repo.get_by_txn("t-2") is None


async def test_concurrent_claimers_never_take_the_same_entry(db: Database) -> None:
    import asyncio

    repo = OutboxRepo(db)
    for i in range(40):
        await _create(repo, f"k{i}")
    batches = await asyncio.gather(*(repo.claim_due(limit=7) for _ in range(8)))
    claimed = [e.id for batch in batches for e in batch]
    assert len(claimed) == len(set(claimed)) == 40


async def _sqlite_plan(db: Database, stmt: Any) -> str:
    sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
    async with db.session() as s:
        rows = (await s.execute(text("EXPLAIN QUERY PLAN " + sql))).all()
    return "\n".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_claiming_walks_the_queue_in_order_instead_of_sorting_all_of_it(db: Database) -> None:
    """A backlog of N queued entries must not cost N per claimed batch: SQLite takes the earliest due rows
    off ix_outbox_due and stops at the limit (a temporary sort would read and order every due row)."""
    plan = await _sqlite_plan(db, OutboxRepo(db).due_query(utcnow(), 100))
    assert "ix_outbox_due (state=? AND next_attempt_at<?)" in plan
    assert "TEMP B-TREE" not in plan


async def test_fresh_entries_are_claimed_oldest_first_and_held_ones_when_due(db: Database) -> None:
    repo = OutboxRepo(db)
    held = (await _create(repo, text="held"))[0]
    (claimed,) = await repo.claim_due(limit=1)
    assert claimed.id == held
    async with db.session() as s:
        await OutboxOps(db).release(s, held, utcnow() + timedelta(seconds=30))
    fresh = [(await _create(repo, text=f"fresh {i}"))[0] for i in range(3)]
    assert [e.id for e in await repo.claim_due(limit=10)] == fresh
    later = await repo.claim_due(utcnow() + timedelta(seconds=31), limit=10)
    assert [e.id for e in later] == [held]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_the_order_check_reads_only_open_entries_of_the_conversation(db: Database) -> None:
    repo = OutboxRepo(db)
    await _create(repo)
    claimed = await repo.claim_due(limit=1)
    plan = await _sqlite_plan(db, blockers_query(claimed))
    assert "ix_outbox_conversation_state (account_id=? AND conversation_id=? AND state=?" in plan
