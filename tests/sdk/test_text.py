"""split_text: chunks fit the limit, cut at line breaks, then whitespace, then grapheme boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgr_bridge.sdk.text import split_text, text_size


def test_cuts_prefer_line_breaks_then_whitespace() -> None:
    assert split_text("line one\nline two is here", 12) == ["line one", "line two is", "here"]
    assert split_text("aaa bbb ccc", 8, unit="bytes") == ["aaa bbb", "ccc"]
    assert split_text("one\r\ntwo\n\nthree", 100, lines_apart=True) == ["one", "two", "three"]
    assert split_text("  \n ", 100, lines_apart=True) == []
    assert split_text("keep\n\nlines", 100) == ["keep\n\nlines"]


def test_code_points_and_graphemes_stay_whole() -> None:
    assert split_text("€€€€€", 8, unit="bytes") == ["€€", "€€", "€"]  # 3-byte characters never cut
    thumbs = "👍🏽" * 3  # two code points, 8 bytes each: never separated from the skin tone
    assert split_text(thumbs, 9, unit="bytes") == ["👍🏽"] * 3
    assert split_text("e\u0301" * 3, 3) == ["e\u0301", "e\u0301", "e\u0301"]
    # one cluster larger than the limit: cut between code points, never inside one
    assert split_text("👍🏽", 4, unit="bytes") == ["👍", "🏽"]


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    assert split_text("x\udcffy", 100, unit="bytes") == ["x\ufffdy"]


def test_a_limit_without_room_for_a_character_is_refused() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 3, unit="bytes")


@given(st.text(max_size=600), st.integers(min_value=4, max_value=120), st.sampled_from(["bytes", "chars"]))
def test_chunks_fit_and_lose_no_visible_text(text: str, limit: int, unit: str) -> None:
    chunks = split_text(text, limit, unit=unit, lines_apart=True)  # type: ignore[arg-type]
    assert all(0 < text_size(c, unit) <= limit and "\n" not in c and "\r" not in c for c in chunks)  # type: ignore[arg-type]
    visible = "".join(text.split())
    assert "".join("".join(chunks).split()) == "".join(
        ch if not "\ud800" <= ch <= "\udfff" else "\ufffd" for ch in visible
    )
