"""The remembered reaction sets stay bounded, survive a restart, and forgetting one degrades gracefully.

Against a real Prosody (bob reacts, the connector turns whole sets into per-emoji events); the bounded map
on its own with the project's in-memory state store.
"""

from __future__ import annotations

import uuid

import pytest
from msgr_bridge_xmpp.config import XmppSettings
from msgr_bridge_xmpp.memory import MessageMemory, key
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import Message, Reaction
from msgr_bridge.errors import ConfigError
from msgr_bridge.schema import ReactionAction
from msgr_bridge.sdk.settings import validate_settings
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.prosody import ProsodyServer

CAPACITY = 64  # small enough to overflow with a few hundred stanzas


def stored_sets(state: MemoryStateStore) -> dict[str, list[str]]:
    return {k: v for k, (v, _expiry) in state.maps["reactions"].entries.items()}


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

    remembered = stored_sets(state)
    assert not state.values  # nothing outside the bounded map (the old unbounded "reactions:" keys)
    assert len(remembered) == CAPACITY < len(targets)  # most of bob's sets were dropped
    assert key(bob.jid, targets[-1], bob.jid) in remembered
    assert remembered[key(bob.jid, targets[-1], me_jid)] == ["❤️", "😂"]

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
        sets = state.maps["reactions"]
        dropped = [t for t in targets if key(bob.jid, t, bob.jid) not in sets.entries]
        assert len(dropped) >= len(targets) - CAPACITY
        forgotten = dropped[0]
        send_reactions(me_jid, forgotten, ["🎉"])
        await settle(after, bob, me_jid)
        assert reactions_on(after, forgotten) == [(ReactionAction.ADD, "🎉")]
        assert await sets.get(key(bob.jid, forgotten, bob.jid)) == ["🎉"]  # remembered again from now on
        send_reactions(me_jid, forgotten, [])
        removed = await after.wait_event(
            lambda e: (
                isinstance(e, Reaction) and e.target_id == forgotten and e.action == ReactionAction.REMOVE
            )
        )
        assert removed.emoji == "🎉"
        assert len(stored_sets(state)) <= CAPACITY
    finally:
        await after.stop()


async def test_the_least_recently_used_set_is_dropped_first() -> None:
    state = MemoryStateStore()
    sets = MessageMemory(state, reaction_sets=4)
    idents = [("room@conf.example.org", f"m{i}", "room@conf.example.org/bob") for i in range(6)]
    for i, ident in enumerate(idents[:4]):
        assert await sets.change_reactions(ident, lambda _old, i=i: [f"e{i}"]) == (None, [f"e{i}"])
    assert await sets.change_reactions(idents[0], lambda old: [*(old or []), "x", "x"]) == (
        ["e0"],
        ["e0", "x"],
    )
    await sets.change_reactions(idents[4], lambda _old: ["e4"])  # full: m1 is the least recently used
    got = [await sets.change_reactions(i, lambda old: old or []) for i in idents]
    assert [old for old, _new in got] == [["e0", "x"], None, ["e2"], ["e3"], ["e4"], None]

    # an emptied set leaves the map (it is what "not remembered" means), making room without a drop
    dropped = await state.maps["reactions"].dropped()
    assert await sets.change_reactions(idents[2], lambda _old: []) == (["e2"], [])
    await sets.change_reactions(idents[5], lambda _old: ["e5"])
    assert await state.maps["reactions"].dropped() == dropped and len(stored_sets(state)) == 4

    # a new instance on the same store reads the same; junk reads as not remembered and is replaced
    await state.maps["reactions"].set(key(*idents[1]), {"junk": 1})
    again = MessageMemory(state, reaction_sets=4)
    assert await again.change_reactions(idents[5], lambda old: old or []) == (["e5"], ["e5"])
    assert await again.change_reactions(idents[1], lambda _old: ["back"]) == (None, ["back"])
    assert len(stored_sets(state)) == 4


@pytest.mark.parametrize("value", [0, -3, "many", 2.5, True, None])
def test_a_bad_reaction_sets_setting_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="reaction_sets"):
        validate_settings(XmppSettings, {"reaction_sets": value}, network="xmpp")
    assert validate_settings(XmppSettings, {"reaction_sets": "300"}, network="xmpp") == XmppSettings(
        reaction_sets=300
    )
    assert XmppSettings().reaction_sets == 8192
