"""Which invites are queued for auto-join (issue #10 item 16), decided in ``sync.InviteJoiner.note_sync``:
only inviters the owner lists in ``auto_join_from``, none by default, and a bounded pending map of
``ctx.state`` (least recently invited dropped first, counted)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from msgr_bridge_matrix.config import MatrixSettings
from msgr_bridge_matrix.sync import MAX_PENDING, InviteJoiner, inviter_allowed
from pydantic import ValidationError

from msgr_bridge.testing.fakes import MemoryStateStore

ME = "@me:home.example"
log = structlog.get_logger("test")


def invite_from(inviter: str) -> dict[str, Any]:
    content = {"membership": "invite"}
    member = {"type": "m.room.member", "state_key": ME, "sender": inviter, "content": content}
    return {"invite_state": {"events": [member]}}


def rooms(*invites: tuple[str, str]) -> dict[str, Any]:
    return {"invite": {room: invite_from(inviter) for room, inviter in invites}}


async def pending(joiner: InviteJoiner) -> set[str]:
    return set(await joiner.pending.list())


async def test_no_invite_is_queued_by_default() -> None:
    joiner = InviteJoiner(ME, log, MemoryStateStore())
    await joiner.note_sync(
        rooms(("!a:x", "@friend:home.example"), ("!b:x", "@spam:evil.example")), full=False
    )
    assert await pending(joiner) == set()


async def test_only_listed_inviters_are_queued() -> None:
    joiner = InviteJoiner(ME, log, MemoryStateStore(), allowed=("@alice:far.example", "*:home.example"))
    await joiner.note_sync(
        rooms(
            ("!alice:x", "@alice:far.example"),
            ("!colleague:x", "@bob:home.example"),
            ("!spam:x", "@spam:evil.example"),
            ("!lookalike:x", "@alice:far.example.evil"),
        ),
        full=False,
    )
    assert await pending(joiner) == {"!alice:x", "!colleague:x"}


async def test_pending_invites_of_an_inviter_no_longer_allowed_are_not_joined() -> None:
    state = MemoryStateStore()
    await state.set("invites", {"pending": {"!old:x": {"attempts": 0, "inviter": "@mallory:evil.example"}}})
    joiner = InviteJoiner(ME, log, state, allowed=("@alice:far.example",))
    await joiner.load()  # an older version's key moves into the map
    assert await pending(joiner) == {"!old:x"} and await state.get("invites") is None
    assert not await joiner.join_pending(client=None)  # type: ignore[arg-type]  # dropped before any call
    assert await pending(joiner) == set()


async def test_the_pending_map_is_bounded_and_counts_what_it_drops() -> None:
    state = MemoryStateStore()
    joiner = InviteJoiner(ME, log, state, allowed=("*",))
    many = [(f"!r{i}:x", f"@u{i}:spam.example") for i in range(MAX_PENDING + 25)]
    with structlog.testing.capture_logs() as logs:
        await joiner.note_sync(rooms(*many), full=False)
    assert len(await pending(joiner)) == MAX_PENDING and await joiner.pending.dropped() == 25
    assert [e["dropped"] for e in logs if e["event"] == "matrix.invite_pending_dropped"] == [25]
    assert "!r0:x" not in await pending(joiner) and f"!r{MAX_PENDING + 24}:x" in await pending(joiner)
    await joiner.note_sync(rooms(("!r30:x", "@u30:spam.example"), ("!new:x", "@n:spam.example")), full=False)
    assert "!r30:x" in await pending(joiner)  # re-invited: newest again, so not the next one dropped
    assert "!r25:x" not in await pending(joiner) and await joiner.pending.dropped() == 26
    again = InviteJoiner(ME, log, state, allowed=("*",))  # a restart keeps them
    await again.load()
    assert await pending(again) == await pending(joiner)


def test_inviter_patterns() -> None:
    assert inviter_allowed("@a:x.org", ["*"])
    assert inviter_allowed("@a:x.org", ["*:x.org"]) and not inviter_allowed("@a:y.x.org", ["*:x.org"])
    assert not inviter_allowed(None, ["*"])
    home = "https://h.example"
    parsed = MatrixSettings(homeserver=home, auto_join_from="@a:x.org, *:y.org")  # type: ignore[arg-type]
    assert parsed.auto_join_from == ["@a:x.org", "*:y.org"]
    assert MatrixSettings(homeserver=home, auto_join_from=None).auto_join_from == []  # type: ignore[arg-type]
    for bad in (["alice"], ["@*:x.org"], 5, ["*:"]):
        with pytest.raises(ValidationError, match="auto_join_from"):
            MatrixSettings(homeserver=home, auto_join_from=bad)
