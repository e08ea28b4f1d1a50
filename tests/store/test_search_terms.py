"""Reading a user's search query as plain words, and the snippet with its highlights."""

from __future__ import annotations

import pytest

from msgr_bridge.store.search_terms import (
    MAX_TERMS,
    SNIPPET_CHARS,
    SearchQueryError,
    Term,
    fts5_query,
    parse_query,
    snippet,
)


def test_words_phrases_and_prefixes_become_terms() -> None:
    terms = parse_query('lunch "next friday" deplo* al* alice@example.com')
    assert terms == (
        Term(("lunch",), "lunch"),
        Term(("next", "friday"), "next friday"),
        Term(("deplo",), "deplo", prefix=True),
        Term(("al",), "al*"),  # too short to be a prefix
        Term(("alice", "example", "com"), "alice@example.com"),
    )
    assert fts5_query(terms) == '"lunch" AND "next friday" AND "deplo"* AND "al" AND "alice example com"'


@pytest.mark.parametrize(
    "q",
    ['"unterminated phrase', 'a" OR "b', "NEAR(a b, 5)", "col:word", "^start", "x'y", "(a", '""" a """'],
)
def test_no_syntax_survives(q: str) -> None:
    fts = fts5_query(parse_query(q))
    # every term is one double-quoted run of letters, digits and spaces, joined by AND
    for part in fts.split(" AND "):
        body = part.removesuffix("*")
        assert body.startswith('"') and body.endswith('"')
        assert all(c.isalnum() or c == " " for c in body[1:-1]), fts


@pytest.mark.parametrize("q", ["", "   ", "!!!", '""', "* - ^", "_"])
def test_a_query_without_words_is_refused(q: str) -> None:
    with pytest.raises(SearchQueryError, match="no word"):
        parse_query(q)


def test_control_characters_separate_words() -> None:
    assert parse_query("a\x00b\tc") == (Term(("a",), "a"), Term(("b",), "b"), Term(("c",), "c"))


def test_long_queries_are_refused() -> None:
    with pytest.raises(SearchQueryError, match="characters"):
        parse_query("a" * 257)
    with pytest.raises(SearchQueryError, match="terms"):
        parse_query(" ".join(["w"] * (MAX_TERMS + 1)))


def test_snippet_highlights_words_phrases_and_prefixes_without_case_or_accents() -> None:
    s = snippet("Café\n\nMEETING moved;  the meeting-room is free", parse_query('cafe "meeting room" mov*'))
    assert s.text == "Café MEETING moved; the meeting-room is free"
    assert [s.text[a:b] for a, b in s.highlights] == ["Café", "moved", "meeting-room"]


def test_a_long_text_is_cut_around_the_first_match() -> None:
    text = " ".join(f"word{i}" for i in range(200)) + " needle " + " ".join(f"tail{i}" for i in range(200))
    s = snippet(text, parse_query("needle"))
    assert len(s.text) <= SNIPPET_CHARS + 2
    assert s.text.startswith("…") and s.text.endswith("…")
    [(a, b)] = s.highlights
    assert s.text[a:b] == "needle"
    assert " needle " in s.text and s.text.index("needle") < SNIPPET_CHARS // 2
    assert not s.text[1:].startswith(" ")  # cut at a word boundary


def test_no_match_gives_the_start_of_the_text() -> None:
    s = snippet("x" * 500, parse_query("absent"))
    assert s.highlights == () and s.text == "x" * SNIPPET_CHARS + "…"
