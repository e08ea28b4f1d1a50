"""The remembered reaction sets stay bounded, survive a restart, and forgetting one degrades gracefully.

Against a real Prosody (bob reacts, the connector turns whole sets into per-emoji events); the buckets on
their own with the project's in-memory state store.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from msgr_bridge_xmpp.reactions import PREFIX, ReactionSets, capacity_setting
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import Message, Reaction
from msgr_bridge.errors import ConfigError
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.prosody import ProsodyServer

CAPACITY = 64  # 4 keys of 16 sets: small enough to overflow with a few hundred stanzas


def stored_sets(state: MemoryStateStore) -> dict[str, list[Any]]:
    return {k: v for k, v in state.values.items() if k.startswith(PREFIX)}


def reactions_on(running: Running, target: str) -> list[tuple[ReactionAction, str]]:
    return sorted(
        (e.action, e.emoji)
        for e in running.events(lambda e: isinstance(e, Reaction) and e.target_id == target)
    )


async def settle(running: Running, bob: Peer, me_jid: str) -> None:
    """Wait until everything bob sent so far went through the connector (one stream, in order)."""
    marker = f"settled {uuid.uuid4().hex}"
    bob.send(me_jid, marker)
    await running.wait_event(lambda e: isinstance(e, Message) and e.text == marker, timeout=30)


async def test_reaction_sets_stay_bounded_and_survive_a_restart(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    state = MemoryStateStore()
    me_jid = users["me"][0]
    before = await Running(
        *make_connector(prosody, *users["me"], state=state, reaction_sets=CAPACITY)
    ).start()
    send_reactions = bob.client.plugin["xep_0444"].send_reactions
    try:
        targets = [bob.send(me_jid, f"message {i}") for i in range(3 * CAPACITY)]
        for target in targets:
            send_reactions(me_jid, target, ["👍", "🎉"])
        await settle(before, bob, me_jid)
        await before.connector.react(bob.jid, targets[-1], "❤️", ReactionAction.ADD)
        await before.connector.react(bob.jid, targets[-1], "😂", ReactionAction.ADD)
        assert reactions_on(before, targets[0]) == [(ReactionAction.ADD, "🎉"), (ReactionAction.ADD, "👍")]
    finally:
        await before.stop()

    buckets = stored_sets(state)
    assert 0 < len(buckets) <= CAPACITY // 16
    assert all(len(sets) <= 16 for sets in buckets.values())
    assert not [k for k in state.values if k.startswith("reactions:")]  # the old unbounded keys
    remembered = {(sender, message) for sets in buckets.values() for _c, message, sender, _v in sets}
    assert len(remembered) <= CAPACITY < len(targets)  # most of bob's sets were dropped
    assert (bob.jid, targets[-1]) in remembered and (me_jid, targets[-1]) in remembered

    after = await Running(*make_connector(prosody, *users["me"], state=state, reaction_sets=CAPACITY)).start()
    try:
        # a recent set, remembered across the restart: bob takes one emoji away
        send_reactions(me_jid, targets[-1], ["🎉"])
        removed = await after.wait_event(
            lambda e: isinstance(e, Reaction) and e.action == ReactionAction.REMOVE
        )
        assert (removed.target_id, removed.emoji, removed.sender.user_id) == (targets[-1], "👍", bob.jid)
        # and ours: removing one of two sends the other, not an empty set
        bob.received.clear()
        await after.connector.react(bob.jid, targets[-1], "❤️", ReactionAction.REMOVE)
        got = await bob.wait_for(lambda m: m["reactions"]["id"] == targets[-1])
        assert got["reactions"]["values"] == {"😂"}

        # a forgotten set: the new one arrives as adds, the removal is lost, nothing breaks
        sets = ReactionSets(state, capacity=CAPACITY)
        dropped = [t for t in targets if await sets.get((bob.jid, t, bob.jid)) is None]
        assert len(dropped) >= len(targets) - CAPACITY
        forgotten = dropped[0]
        send_reactions(me_jid, forgotten, ["🎉"])
        await settle(after, bob, me_jid)
        assert reactions_on(after, forgotten) == [(ReactionAction.ADD, "🎉")]
        assert await sets.get((bob.jid, forgotten, bob.jid)) == ["🎉"]  # remembered again from now on
        send_reactions(me_jid, forgotten, [])
        removed = await after.wait_event(
            lambda e: (
                isinstance(e, Reaction) and e.target_id == forgotten and e.action == ReactionAction.REMOVE
            )
        )
        assert removed.emoji == "🎉"
        assert len(stored_sets(state)) <= CAPACITY // 16
    finally:
        await after.stop()


async def test_buckets_drop_the_least_recently_changed_set_first() -> None:
    state = MemoryStateStore()
    sets = ReactionSets(state, capacity=4, ways=4)  # one key
    idents = [("room@conf.example.org", f"m{i}", "room@conf.example.org/bob") for i in range(6)]
    for i, ident in enumerate(idents[:4]):
        assert await sets.change(ident, lambda _old, i=i: [f"e{i}"]) == (None, [f"e{i}"])
    assert await sets.change(idents[0], lambda old: [*(old or []), "x", "x"]) == (["e0"], ["e0", "x"])
    await sets.change(idents[4], lambda _old: ["e4"])  # full: m1 is the least recently changed
    assert list(state.values) == [f"{PREFIX}0"]
    assert [await sets.get(i) for i in idents] == [["e0", "x"], None, ["e2"], ["e3"], ["e4"], None]

    # an emptied set leaves its bucket (it is what "not remembered" means), making room without eviction
    assert await sets.change(idents[2], lambda _old: []) == (["e2"], [])
    await sets.change(idents[5], lambda _old: ["e5"])
    assert [await sets.get(i) for i in idents] == [["e0", "x"], None, None, ["e3"], ["e4"], ["e5"]]
    assert len(state.values[f"{PREFIX}0"]) == 4

    # a new instance on the same store reads the same; junk in a bucket is skipped and then replaced
    await state.set(f"{PREFIX}0", [*state.values[f"{PREFIX}0"], ["x", 1, None, "y"], "junk"])
    again = ReactionSets(state, capacity=4, ways=4)
    assert await again.get(idents[5]) == ["e5"]
    await again.change(idents[1], lambda old: ["back"])
    assert len(state.values[f"{PREFIX}0"]) == 4
    assert [await again.get(i) for i in idents] == [["e0", "x"], ["back"], None, None, ["e4"], ["e5"]]


async def test_many_keys_spread_over_every_bucket_within_the_bound() -> None:
    state = MemoryStateStore()
    sets = ReactionSets(state, capacity=128, ways=16)
    for i in range(1000):
        await sets.change(("a@example.org", f"m{i}", "a@example.org"), lambda _old: ["👍"])
    assert len(state.values) == 8 and all(len(v) == 16 for v in state.values.values())
    assert await sets.get(("a@example.org", "m999", "a@example.org")) == ["👍"]


@pytest.mark.parametrize("value", [0, -3, "many", 2.5, True, None])
def test_a_bad_reaction_sets_setting_is_refused(value: object) -> None:
    with pytest.raises(ConfigError):
        capacity_setting({"reaction_sets": value})
    assert capacity_setting({"reaction_sets": "300"}) == 300 and capacity_setting({}) == 8192
