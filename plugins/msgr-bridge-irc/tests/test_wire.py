"""Line parsing, case mapping and the room a line leaves for text (splitting and pacing: tests/sdk)."""

from __future__ import annotations

import pytest
from msgr_bridge_irc.wire import irc_lower, parse_line, text_budget


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
