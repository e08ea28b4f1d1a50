"""ConversationHolds: when a held conversation may send again."""

from __future__ import annotations

from datetime import timedelta

from msgr_bridge.outbound.held_conversations import ConversationHolds
from msgr_bridge.store.types import utcnow


def test_a_hold_ends_at_its_time_and_can_be_cleared_early() -> None:
    holds = ConversationHolds()
    now = utcnow()
    holds.hold("a", "c1", now + timedelta(seconds=5))
    holds.hold("a", "c2", now + timedelta(seconds=5))
    assert holds.until("a", "c1", now) == now + timedelta(seconds=5)
    assert holds.until("b", "c1", now) is None  # another account's conversation is not held
    assert holds.until("a", "c1", now + timedelta(seconds=6)) is None  # over, and forgotten
    assert len(holds) == 1
    holds.clear("a", "c2")
    assert holds.until("a", "c2", now) is None


def test_the_map_stays_bounded_dropping_the_least_recently_held() -> None:
    holds = ConversationHolds(maxsize=2)
    end = utcnow() + timedelta(seconds=5)
    for conv in ("c1", "c2", "c3"):
        holds.hold("a", conv, end)
    assert len(holds) == 2
    assert holds.until("a", "c1") is None and holds.until("a", "c3") == end
