"""Keyed connector state on both backends: get/set/delete, list by prefix, TTL, bounded maps (LRU, dropped
count), and a bound that holds across a restart (a new ``Database`` on the same database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.connector_state import AccountState

pytestmark = pytest.mark.usefixtures("accounts")


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


async def test_get_set_delete_and_list_by_exact_prefix(db: Database) -> None:
    state = AccountState(db, "acct-a", "loop")
    other = AccountState(db, "acct-b", "loop")
    await state.set("room:1", {"n": 1})
    await state.set("room:2", [2])
    await state.set("Room:3", 3)  # another case: not under "room:"
    await state.set("rooms", "x")
    await other.set("room:9", 9)
    assert await state.get("room:1") == {"n": 1}
    assert await state.get("missing", "dflt") == "dflt"
    assert await state.list("room:") == {"room:1": {"n": 1}, "room:2": [2]}
    assert await state.list("room:", limit=1) == {"room:1": {"n": 1}}
    assert list(await state.list()) == ["Room:3", "room:1", "room:2", "rooms"]
    assert await state.delete("room:1") is True
    assert await state.delete("room:1") is False
    assert await state.list("room") == {"room:2": [2], "rooms": "x"}
    assert await other.list() == {"room:9": 9}
    with pytest.raises(TypeError, match="room:x"):
        await state.set("room:x", object())


async def test_an_overlong_key_is_refused_with_what_to_do(db: Database) -> None:
    """Regression: a key of many kilobytes (a network id used as is) reached PostgreSQL, which refused to
    index it ("index row requires 10064 bytes") and failed the connector's write."""
    state = AccountState(db, "acct-a", "loop")
    with pytest.raises(ValueError, match=r"at most 512 characters.*hash"):
        await state.set("x" * 10_000, 1)
    with pytest.raises(ValueError, match="at most 512"):
        await state.map("m", max_entries=5).set("y" * 10_000, 1)
    await state.set("z" * 512, 1)  # the bound itself is fine on both backends
    assert await state.get("z" * 512) == 1


async def test_a_key_with_a_ttl_expires_and_is_deleted_by_a_later_write(db: Database) -> None:
    clock = Clock()
    state = AccountState(db, "acct-a", "loop", now=clock.now)
    await state.set("probe", True, ttl_s=60)
    await state.set("keep", 1)
    clock.advance(59)
    assert await state.get("probe") is True
    clock.advance(2)
    assert await state.get("probe") is None
    assert await state.list() == {"keep": 1}
    await state.set("other", 2)  # the write purges the expired key from the table
    async with db.engine.connect() as conn:
        from sqlalchemy import text

        keys = (await conn.execute(text("SELECT key FROM connector_state ORDER BY key"))).scalars().all()
    assert keys == ["keep", "other"]
    await state.set("keep", 1, ttl_s=10)  # a TTL can be set on an existing key, and cleared again
    await state.set("keep", 1)
    clock.advance(3600)
    assert await state.get("keep") == 1
    with pytest.raises(ValueError, match="ttl_s"):
        await state.set("bad", 1, ttl_s=0)


async def test_a_bounded_map_drops_the_least_recently_used_and_counts(db: Database) -> None:
    state = AccountState(db, "acct-a", "loop")
    reactions = state.map("reactions", max_entries=3)
    for key in ("a", "b", "c"):
        await reactions.set(key, key.upper())
    assert await reactions.get("a") == "A"  # a read is a use: "b" is now the least recently used
    await reactions.set("d", "D")
    assert await reactions.list() == {"a": "A", "c": "C", "d": "D"}
    await reactions.set("c", "C2")  # an update is a use too
    await reactions.set("e", "E")
    assert await reactions.list() == {"c": "C2", "d": "D", "e": "E"}
    assert await reactions.size() == 3 and await reactions.dropped() == 2
    # the map's keys are its own: not in the plain state, and another map's bound does not touch them
    assert await state.list() == {}
    small = state.map("ids", max_entries=1)
    await small.set("x", 1)
    await small.set("y", 2)
    assert await small.list() == {"y": 2} and await small.dropped() == 1
    assert await reactions.size() == 3 and await reactions.dropped() == 2
    with pytest.raises(ValueError, match="max_entries"):
        state.map("huge", max_entries=0)


async def test_the_bound_holds_across_a_restart(db: Database) -> None:
    url = db.url.render_as_string(hide_password=False)
    async with Database(url) as first:
        reactions = AccountState(first, "acct-a", "loop").map("reactions", max_entries=3)
        for i in range(5):
            await reactions.set(f"k{i}", i)
    async with Database(url) as second:  # a new process: nothing but the database is shared
        reactions = AccountState(second, "acct-a", "loop").map("reactions", max_entries=3)
        assert await reactions.list() == {"k2": 2, "k3": 3, "k4": 4}
        assert await reactions.dropped() == 2
        await reactions.get("k2")
        await reactions.set("k5", 5)
        assert await reactions.list() == {"k2": 2, "k4": 4, "k5": 5}
        assert await reactions.dropped() == 3
        # a smaller bound after an upgrade trims the map on its next write
        smaller = AccountState(second, "acct-a", "loop").map("reactions", max_entries=1)
        await smaller.set("k6", 6)
        assert await smaller.list() == {"k6": 6} and await smaller.dropped() == 6


async def test_the_old_whole_value_protocol_still_works(db: Database) -> None:
    state = AccountState(db, "acct-a", "loop")
    await state.set("sync_token", "s1")
    await state.set("sync_token", "s2")
    assert await state.get("sync_token") == "s2"


async def test_concurrent_writes_keep_the_bound_exactly(db: Database) -> None:
    reactions = AccountState(db, "acct-a", "loop").map("reactions", max_entries=5)
    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(reactions.set, f"k{i:02}", i)
    assert await reactions.size() == 5
    assert await reactions.dropped() == 25
