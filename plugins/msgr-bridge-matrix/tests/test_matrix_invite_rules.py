"""Which invites are queued for auto-join (issue #10 item 16), decided in ``invites.InviteJoiner.note_sync``:
only inviters the owner lists in ``auto_join_from``, none by default, and a bounded pending map."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from msgr_bridge_matrix.invites import (
    MAX_PENDING,
    InviteJoiner,
    inviter_allowed,
    parse_auto_join_from,
)

from msgr_bridge.errors import PermanentError

ME = "@me:home.example"
log = structlog.get_logger("test")


def invite_from(inviter: str) -> dict[str, Any]:
    content = {"membership": "invite"}
    member = {"type": "m.room.member", "state_key": ME, "sender": inviter, "content": content}
    return {"invite_state": {"events": [member]}}


def rooms(*invites: tuple[str, str]) -> dict[str, Any]:
    return {"invite": {room: invite_from(inviter) for room, inviter in invites}}


def test_no_invite_is_queued_by_default() -> None:
    joiner = InviteJoiner(ME, log)
    joiner.note_sync(rooms(("!a:x", "@friend:home.example"), ("!b:x", "@spam:evil.example")), full=False)
    assert joiner.pending == {}


def test_only_listed_inviters_are_queued() -> None:
    joiner = InviteJoiner(ME, log, allowed=("@alice:far.example", "*:home.example"))
    joiner.note_sync(
        rooms(
            ("!alice:x", "@alice:far.example"),
            ("!colleague:x", "@bob:home.example"),
            ("!spam:x", "@spam:evil.example"),
            ("!lookalike:x", "@alice:far.example.evil"),
        ),
        full=False,
    )
    assert set(joiner.pending) == {"!alice:x", "!colleague:x"}


async def test_pending_invites_of_an_inviter_no_longer_allowed_are_not_joined() -> None:
    joiner = InviteJoiner(ME, log, allowed=("@alice:far.example",))
    joiner.load({"pending": {"!old:x": {"attempts": 0, "inviter": "@mallory:evil.example", "direct": False}}})
    assert "!old:x" in joiner.pending  # loaded; the join step drops it before any call (client unused)
    await joiner.join_pending(client=None)  # type: ignore[arg-type]
    assert joiner.pending == {} and joiner.joined == []


def test_the_pending_map_is_bounded_and_counts_what_it_drops() -> None:
    joiner = InviteJoiner(ME, log, allowed=("*",))
    many = [(f"!r{i}:x", f"@u{i}:spam.example") for i in range(MAX_PENDING + 25)]
    joiner.note_sync(rooms(*many), full=False)
    assert len(joiner.pending) == MAX_PENDING
    assert joiner.dropped == 25
    assert "!r0:x" not in joiner.pending and f"!r{MAX_PENDING + 24}:x" in joiner.pending
    joiner.note_sync(rooms(("!r30:x", "@u30:spam.example"), ("!new:x", "@n:spam.example")), full=False)
    assert "!r30:x" in joiner.pending  # re-invited: newest again, so not the next one dropped
    assert "!r25:x" not in joiner.pending and joiner.dropped == 26
    saved = joiner.dump()
    again = InviteJoiner(ME, log, allowed=("*",))
    saved["pending"] = {f"!s{i}:x": {"attempts": 0} for i in range(MAX_PENDING * 2)}
    again.load(saved)
    assert len(again.pending) == MAX_PENDING


def test_inviter_patterns() -> None:
    assert inviter_allowed("@a:x.org", ["*"])
    assert inviter_allowed("@a:x.org", ["*:x.org"]) and not inviter_allowed("@a:y.x.org", ["*:x.org"])
    assert not inviter_allowed(None, ["*"])
    assert parse_auto_join_from("@a:x.org, *:y.org") == ("@a:x.org", "*:y.org")
    assert parse_auto_join_from(None) == ()
    for bad in (["alice"], ["@*:x.org"], 5, ["*:"]):
        with pytest.raises(PermanentError):
            parse_auto_join_from(bad)
