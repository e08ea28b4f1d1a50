"""Line parsing, splitting to the 512-byte limit and the flood bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgr_bridge_irc.wire import TokenBucket, irc_lower, parse_line, split_text, text_budget


def test_parse_line_with_tags_prefix_and_trailing() -> None:
    line = parse_line(r"@time=2026-01-01T00:00:00Z;x=a\sb\:c :nick!u@h PRIVMSG #chan :hello :world")
    assert line.tags == {"time": "2026-01-01T00:00:00Z", "x": "a b;c"}
    assert (line.nick, line.command, line.params) == ("nick", "PRIVMSG", ("#chan", "hello :world"))
    assert parse_line("PING :abc").params == ("abc",) and not parse_line("PING x").from_user
    with pytest.raises(ValueError):
        parse_line(":prefix.only")


def test_casemapping() -> None:
    assert irc_lower("A[B]\\~", "rfc1459") == "a{b}|^"
    assert irc_lower("A[B]", "ascii") == "a[b]"


def test_budget_counts_prefix_command_target_and_crlf() -> None:
    nick, room, target = "bridge", len("!~bridge@127.0.0.1"), "#chan"
    budget = text_budget(nick, room, "PRIVMSG", target)
    assert len(f":{nick}!~bridge@127.0.0.1 PRIVMSG {target} :".encode()) + budget + 2 == 512


def test_split_prefers_whitespace_and_keeps_utf8_whole() -> None:
    assert split_text("aaa bbb ccc", 8) == ["aaa bbb", "ccc"]
    assert split_text("€€€€€", 8) == ["€€", "€€", "€"]  # 3-byte chars never cut
    assert split_text("one\r\ntwo\n\nthree", 100) == ["one", "two", "three"]
    assert split_text("  \n ", 100) == []


@given(st.text(max_size=600), st.integers(min_value=8, max_value=120))
def test_split_chunks_fit_and_lose_no_visible_text(text: str, budget: int) -> None:
    chunks = split_text(text, budget)
    assert all(0 < len(c.encode()) <= budget and "\n" not in c and "\r" not in c for c in chunks)
    flat = "".join(text.replace("\x00", "").split())
    assert "".join("".join(chunks).split()) == flat


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, 3, clock=lambda: now[0])
    assert [bucket.reserve(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay_for(1) == pytest.approx(0.5)
    assert bucket.reserve(2) == pytest.approx(1.0)
    now[0] += 1.0
    assert bucket.delay_for(1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
