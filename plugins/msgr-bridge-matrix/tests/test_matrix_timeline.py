"""The reactions the connector remembers (``timeline.SeenReactions``): bounded maps of ``ctx.state``, written
key by key, kept across a restart, and the whole-value keys of earlier versions adopted once."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_matrix import timeline
from msgr_bridge_matrix.timeline import SeenReactions, Timeline

from msgr_bridge.testing.fakes import MemoryStateStore

ME, BOB, ROOM = "@me:x.org", "@bob:x.org", "!room:x.org"


class Log:
    def info(self, *args: Any, **kw: Any) -> None: ...


def reaction(event_id: str, target: str, key: str, sender: str) -> dict[str, Any]:
    rel = {"rel_type": "m.annotation", "event_id": target, "key": key}
    return {"type": "m.reaction", "event_id": event_id, "sender": sender, "content": {"m.relates_to": rel}}


def redaction(target: str) -> dict[str, Any]:
    return {
        "type": "m.room.redaction",
        "event_id": f"$r-{target}",
        "sender": BOB,
        "content": {"redacts": target},
    }


async def test_a_redacted_reaction_is_known_after_a_restart() -> None:
    state = MemoryStateStore()
    first = Timeline(ME, Log(), SeenReactions(state, ME))
    await first.timeline_payload(ROOM, reaction("$re", "$msg", "👍", BOB))
    await first.timeline_payload(ROOM, reaction("$mine", "$msg", "🎉", ME))
    # a new session on the same state (nothing saved at the end of a batch: each write went at once)
    again = Timeline(ME, Log(), SeenReactions(state, ME))
    assert await again.reactions.own_reaction(ROOM, "$msg", "🎉") == "$mine"
    payload = await again.timeline_payload(ROOM, redaction("$re"))
    assert payload is not None
    assert payload["redacted_reaction"] == {"target_id": "$msg", "key": "👍", "sender": BOB}
    mine = await again.timeline_payload(ROOM, redaction("$mine"))
    assert mine is not None and mine["redacted_reaction"]["sender"] == ME
    assert await again.reactions.own_reaction(ROOM, "$msg", "🎉") is None
    plain = await again.timeline_payload(ROOM, redaction("$re"))  # seen once: a second one is a Delete
    assert plain is not None and "redacted_reaction" not in plain


async def test_the_maps_stay_bounded_and_count_what_they_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeline, "MAX_REMEMBERED_REACTIONS", 3)
    state = MemoryStateStore()
    seen = SeenReactions(state, ME)
    for i in range(5):
        await seen.remember(f"$r{i}", "$msg", f"k{i}", ME, ROOM)
    again = SeenReactions(state, ME)  # across a restart too
    assert await again.seen.size() == 3 and await again.own.size() == 3
    assert await again.seen.dropped() == 2
    assert await again.forget("$r0", ROOM) is None  # the least recently used went first
    assert await again.forget("$r4", ROOM) == ["$msg", "k4", ME]


async def test_the_whole_value_keys_of_earlier_versions_are_adopted_once() -> None:
    state = MemoryStateStore()
    await state.set("reactions", {"$old": ["$msg", "👍", BOB], "$bad": ["short"]})
    await state.set("own_reactions", {f"{ROOM}\n$msg\n🎉": "$mine"})
    seen = SeenReactions(state, ME)
    await seen.adopt_saved_blobs()
    assert await state.get("reactions") is None and await state.get("own_reactions") is None
    assert await seen.forget("$old", ROOM) == ["$msg", "👍", BOB]
    assert await seen.forget("$bad", ROOM) is None
    assert await seen.own_reaction(ROOM, "$msg", "🎉") == "$mine"
