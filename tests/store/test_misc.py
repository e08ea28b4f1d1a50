"""Event log, quarantine, connector state (namespaced) and sync state."""

from __future__ import annotations

import pytest

from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import (
    AccountRepo,
    AccountState,
    ConnectorStateRepo,
    EventLogRepo,
    NewEvent,
    QuarantineRepo,
    SyncStateRepo,
)
from tests.store.store_helpers import at

pytestmark = pytest.mark.usefixtures("accounts")


async def test_event_log_appends_in_order_and_reads_after_a_cursor(db: Database) -> None:
    repo = EventLogRepo(db)
    async with db.session() as s:
        first = await repo.append(s, "default", "acct-a", "room-1", "message", {"n": 0})
        rest = await repo.append_many(
            s,
            [
                NewEvent("default" if i % 2 else "t2", "acct-a", "room-1", "message", {"n": i})
                for i in range(1, 6)
            ],
        )
    assert rest == sorted(rest) and rest[0] > first
    assert await repo.last_seq() == rest[-1]
    after = await repo.read_after(first, limit=3)
    assert [e.payload["n"] for e in after] == [1, 2, 3]
    assert [e.payload["n"] for e in await repo.read_after(after[-1].seq)] == [4, 5]
    assert [e.payload["n"] for e in await repo.read_after(0, tenant="t2")] == [2, 4]


async def test_a_large_append_keeps_input_order_and_payloads(db: Database) -> None:
    """PostgreSQL appends one array per column (``pg_bulk``): seq order must still be the input order, and
    JSON payloads (nested, unicode, nulls) must come back as written."""
    repo = EventLogRepo(db)
    events = [
        NewEvent("default", None, None, "k", {"n": i, "t": f"é{i}", "x": [None, {"a": i}]})
        for i in range(1500)
    ]
    async with db.session() as s:
        seqs = await repo.append_many(s, events)
    assert len(seqs) == 1500 and seqs == sorted(set(seqs))
    read = await repo.read_after(seqs[0] - 1, limit=2000)
    assert [e.payload for e in read] == [e.payload for e in events]


async def test_quarantine_keeps_payloads_even_with_odd_values(db: Database) -> None:
    repo = QuarantineRepo(db)
    await repo.add("loop", "acct-a", {"raw": b"\x00bytes", "when": at(0)}, "cannot convert")
    await repo.add("irc", None, {"line": ":x PRIVMSG"}, "bad line")
    assert await repo.count() == 2
    assert await repo.count(network="irc") == 1
    (item,) = await repo.list(network="loop")
    assert item.error == "cannot convert" and "bytes" in item.payload["raw"]


async def test_connector_state_is_namespaced_per_account(db: Database) -> None:
    repo = ConnectorStateRepo(db)
    await repo.set("acct-a", "matrix", "since", "s1")
    await repo.set("acct-a", "xmpp", "since", {"mam": "id-9"})
    await repo.set("acct-b", "matrix", "since", "other")
    await repo.set("acct-a", "matrix", "since", "s2")
    assert await repo.get("acct-a", "matrix", "since") == "s2"
    assert await repo.get("acct-a", "xmpp", "since") == {"mam": "id-9"}
    assert await repo.get("acct-b", "matrix", "since") == "other"
    assert await repo.get("acct-b", "xmpp", "since", default=0) == 0
    assert await repo.items("acct-a", "matrix") == {"since": "s2"}
    assert await repo.delete("acct-a", "matrix", "since")
    assert await repo.get("acct-a", "matrix", "since") is None
    with pytest.raises(TypeError, match="matrix/bad"):
        await repo.set("acct-a", "matrix", "bad", object())


async def test_account_state_handle_is_what_a_connector_gets(db: Database) -> None:
    state = AccountState(db, "acct-a", "loopback")
    assert await state.get("cursor", default="none") == "none"
    await state.set("cursor", [1, 2, 3])
    assert await state.get("cursor") == [1, 2, 3]
    assert await AccountState(db, "acct-b", "loopback").get("cursor") is None


async def test_sync_state_keeps_the_cursor_across_errors(db: Database) -> None:
    repo = SyncStateRepo(db)
    assert await repo.get("acct-a") is None
    await repo.set_cursor("acct-a", "c1", at=at(1))
    await repo.set_error("acct-a", "timeout")
    got = await repo.get("acct-a")
    assert got is not None and (got.cursor, got.last_sync_at, got.last_error) == ("c1", at(1), "timeout")
    await repo.set_cursor("acct-a", "c2", at=at(2))
    got = await repo.get("acct-a")
    assert got is not None and (got.cursor, got.last_error) == ("c2", None)


async def test_deleting_an_account_removes_what_only_it_owns(db: Database) -> None:
    await ConnectorStateRepo(db).set("acct-a", "ns", "k", 1)
    await SyncStateRepo(db).set_cursor("acct-a", "c")
    assert await AccountRepo(db).delete("acct-a")
    assert await ConnectorStateRepo(db).get("acct-a", "ns", "k") is None
    assert await SyncStateRepo(db).get("acct-a") is None
    assert not await AccountRepo(db).delete("acct-a")
