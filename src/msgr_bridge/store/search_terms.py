"""What a user types into search, made safe for both full-text engines; and the snippet shown for a hit.

A query is read as plain words, never as FTS5 or ``tsquery`` syntax: whatever is typed, no operator, column
filter or quote reaches the engine, so no input can make a query fail or change its meaning.

* Words are runs of letters and digits (``[^\\W_]+``); everything else separates them. Every word must
  appear (AND); case is ignored, and on SQLite accents too.
* ``"two words"`` in double quotes is a phrase: the words next to each other, in that order. A chunk typed
  without spaces but with punctuation inside (``alice@example.com``, ``don't``) is a phrase of its words.
* ``deplo*``: a single word of at least ``MIN_PREFIX`` characters ending in ``*`` matches words that start
  with it. A shorter one is an ordinary word.
* At most ``MAX_QUERY_CHARS`` characters and ``MAX_TERMS`` terms; a query with no word at all is refused.

``snippet(text, terms)`` finds the terms in a message's text the same way (case and accents folded) and
returns at most ``SNIPPET_CHARS`` characters of it around the first match, with the matches' offsets.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..errors import BridgeError

MAX_QUERY_CHARS = 256
MAX_TERMS = 16
MIN_PREFIX = 3
SNIPPET_CHARS = 160
MAX_HIGHLIGHTS = 32
WORD = re.compile(r"[^\W_]+")
CHUNK = re.compile(r'"([^"]*)"?|(\S+)')
ELLIPSIS = "…"


class SearchQueryError(BridgeError):
    """A search query that cannot be searched (empty, too long, too many terms)."""

    code = "invalid_query"


@dataclass(frozen=True, slots=True)
class Term:
    """One condition of a query: its words in order (a phrase when more than one), as typed (``source``),
    and whether the last (only) word is a prefix."""

    words: tuple[str, ...]
    source: str
    prefix: bool = False

    def fts5(self) -> str:
        """This term in FTS5 query syntax: a quoted phrase of bare words (which hold no quote)."""
        return '"' + " ".join(self.words) + '"' + ("*" if self.prefix else "")

    def tsquery_prefix(self) -> str:
        """A prefix term in ``to_tsquery`` syntax: one quoted word of letters and digits, then ``:*``."""
        return "'" + self.words[0].lower() + "':*"


def parse_query(q: str) -> tuple[Term, ...]:
    """The terms of a user's query (see the module docstring); ``SearchQueryError`` when there are none."""
    if len(q) > MAX_QUERY_CHARS:
        raise SearchQueryError(
            f"the search query has {len(q)} characters; at most {MAX_QUERY_CHARS} are allowed",
            hint="search for fewer, more distinctive words",
        )
    # Control characters separate words (PostgreSQL refuses a NUL in text).
    q = "".join(" " if unicodedata.category(c) == "Cc" else c for c in unicodedata.normalize("NFC", q))
    terms: list[Term] = []
    for match in CHUNK.finditer(q):
        quoted, bare = match.group(1), match.group(2)
        source = quoted if quoted is not None else bare
        words = tuple(WORD.findall(source))
        if not words:
            continue
        prefix = quoted is None and len(words) == 1 and bare.endswith("*") and len(words[0]) >= MIN_PREFIX
        terms.append(Term(words, source.rstrip("*") if prefix else source, prefix))
    # (``source`` goes to PostgreSQL's phraseto_tsquery as plain text, never as query syntax.)
    if not terms:
        raise SearchQueryError(
            f"the search query {q!r} has no word to search for",
            hint="type at least one word of letters or digits",
        )
    if len(terms) > MAX_TERMS:
        raise SearchQueryError(
            f"the search query has {len(terms)} terms; at most {MAX_TERMS} are allowed",
            hint="search for fewer words, or put words that belong together in double quotes",
        )
    return tuple(terms)


def fts5_query(terms: tuple[Term, ...]) -> str:
    return " AND ".join(t.fts5() for t in terms)


def fold(word: str) -> str:
    """A word compared without case and accents (as FTS5's ``remove_diacritics`` does)."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True, slots=True)
class Snippet:
    text: str
    highlights: tuple[tuple[int, int], ...]
    """``[start, end)`` offsets into ``text`` in characters (Unicode code points), sorted, disjoint."""


def snippet(text: str, terms: tuple[Term, ...], width: int = SNIPPET_CHARS) -> Snippet:
    """Up to ``width`` characters of ``text`` (whitespace runs made one space) around its first match,
    with ``…`` where it was cut, and where each term matches in it."""
    flat = " ".join(text.split())
    spans = _matches(flat, terms)
    if len(flat) <= width:
        return Snippet(flat, tuple(spans[:MAX_HIGHLIGHTS]))
    first = spans[0][0] if spans else 0
    start = max(0, min(first - width // 4, len(flat) - width))
    if start > 0:
        space = flat.find(" ", start, first)
        start = space + 1 if space != -1 else start
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.rfind(" ", start + width // 2, end)
        end = space if space != -1 else end
    lead = ELLIPSIS if start > 0 else ""
    shift = len(lead) - start
    kept = [(max(s, start) + shift, min(e, end) + shift) for s, e in spans if s < end and e > start]
    body = lead + flat[start:end] + (ELLIPSIS if end < len(flat) else "")
    return Snippet(body, tuple(kept[:MAX_HIGHLIGHTS]))


def _matches(text: str, terms: tuple[Term, ...]) -> list[tuple[int, int]]:
    tokens = [(m.start(), m.end(), fold(m.group())) for m in WORD.finditer(text)]
    found: list[tuple[int, int]] = []
    for term in terms:
        words = [fold(w) for w in term.words]
        n = len(words)
        for i in range(len(tokens) - n + 1):
            if all(tokens[i + k][2] == words[k] for k in range(n - 1)) and (
                tokens[i + n - 1][2].startswith(words[-1])
                if term.prefix
                else tokens[i + n - 1][2] == words[-1]
            ):
                found.append((tokens[i][0], tokens[i + n - 1][1]))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
