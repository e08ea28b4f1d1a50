"""The dedupe cache: what it answers, and what it costs to keep (issue 19: ~330 bytes an entry made a full
cache of 100,000 entries ~33 MB)."""

from __future__ import annotations

import tracemalloc

from msgr_bridge.inbound.dedupe import DedupeCache


def test_a_key_is_seen_only_by_its_account_and_only_as_itself() -> None:
    cache = DedupeCache()
    cache.add("acc-1", ("irc", "h/#c", "id-1", 0))
    assert cache.seen("acc-1", ("irc", "h/#c", "id-1", 0))
    assert not cache.seen("acc-2", ("irc", "h/#c", "id-1", 0))
    assert not cache.seen("acc-1", ("irc", "h/#c", "id-1", 1))
    assert not cache.seen("acc-1", ("irc", "h/#c", "id-2", 0))
    assert not cache.seen("acc-1", ("irc", "h/#c2", "id-1", 0))
    # the parts are kept apart: shifting text from one field to the next is another key
    assert not cache.seen("acc-1", ("irc", "h/#ci", "d-1", 0))
    cache.add("acc-1", ("irc", "h/#c\x00", "id", 0))
    assert not cache.seen("acc-1", ("irc", "h/#c", "\x00id", 0))
    cache.add("acc-1", ("irc", "h/#c", "bad-\udcff", 0))  # a lone surrogate from a broken payload
    assert cache.seen("acc-1", ("irc", "h/#c", "bad-\udcff", 0))
    assert not cache.seen("acc-1", ("irc", "h/#c", "bad-\udcfe", 0))
    assert cache.hits == 2


def test_the_oldest_entry_goes_first_and_a_hit_makes_it_young() -> None:
    cache = DedupeCache(maxsize=2)
    cache.add("a", ("n", "c", "1", 0))
    cache.add("a", ("n", "c", "2", 0))
    assert cache.seen("a", ("n", "c", "1", 0))
    cache.add("a", ("n", "c", "3", 0))
    assert len(cache) == 2
    assert cache.seen("a", ("n", "c", "1", 0)) and not cache.seen("a", ("n", "c", "2", 0))


def test_an_entry_keeps_none_of_the_keys_strings() -> None:
    cache = DedupeCache()
    tracemalloc.start()
    try:
        for i in range(5000):
            # fresh strings, as parsing a payload makes them
            cache.add(f"acc-{i % 3}", ("irc", f"host/#channel-{i % 7}", f"irc:{i:020d}:abcdef", 0))
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept / 5000 < 200  # a tuple of the key's strings costs ~330 bytes an entry
