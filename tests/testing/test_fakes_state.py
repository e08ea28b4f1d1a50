"""The in-memory ``MemoryStateStore`` behaves like the database one (TTL, prefix lists, bounded maps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from msgr_bridge.testing.fakes import MemoryStateStore


async def test_memory_state_ttl_prefix_and_bounded_map() -> None:
    at = [datetime(2026, 1, 1, tzinfo=UTC)]
    state = MemoryStateStore(now=lambda: at[0])
    await state.set("room:1", 1, ttl_s=10)
    await state.set("room:2", 2)
    await state.set("Room:3", 3)
    assert await state.list("room:") == {"room:1": 1, "room:2": 2}
    at[0] += timedelta(seconds=11)
    assert await state.get("room:1") is None and await state.list("room:") == {"room:2": 2}
    assert await state.delete("room:2") is True and await state.delete("room:2") is False
    m = state.map("r", max_entries=2)
    await m.set("a", 1)
    await m.set("b", 2)
    await m.get("a")
    await m.set("c", 3)
    assert await m.list() == {"a": 1, "c": 3} and await m.dropped() == 1
    assert state.map("r", max_entries=2) is m
    with pytest.raises(TypeError, match="'x'"):
        await state.set("x", object())


async def test_a_hand_built_context_has_message_lookups_that_a_test_fills() -> None:
    from msgr_bridge.sdk.message_ids import MemoryMessageIds, MessageRef
    from msgr_bridge.testing.fakes import make_context

    ctx = make_context("loopback")
    assert isinstance(ctx.messages, MemoryMessageIds)
    assert await ctx.messages.by_remote("room", "m1") is None
    ctx.messages.add(MessageRef(message_id=7, conversation_id="room", remote_id="m1", txn_id="t"))
    assert (await ctx.messages.by_remote("room", "m1")) == await ctx.messages.by_id(7)
    assert (await ctx.messages.by_txn("t")) is not None and await ctx.messages.by_txn("u") is None
