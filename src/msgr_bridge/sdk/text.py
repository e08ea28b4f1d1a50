"""Splitting long text by a network's limits, for connectors whose network caps a message's size.

``split_text(text, limit, unit=...)`` cuts text into chunks that each fit ``limit`` (UTF-8 bytes or
characters). Where it cuts, in order of preference:

1. at a line break (in the second half of the room a chunk has, so chunks are not needlessly short);
2. at whitespace (also in the second half);
3. at the last grapheme cluster boundary that fits (``regex``'s ``\\X``: an emoji with its skin tone or
   flag, a letter with its combining accents, stay whole);
4. only when one grapheme cluster alone is larger than the limit: at the last code point boundary that
   fits. A UTF-8 sequence is never cut.

The separator at a cut (the line break or one whitespace character) is consumed: the chunk boundary stands
for it. With ``lines_apart=True`` (a network whose messages cannot hold a line break, such as IRC) every
line is split on its own and empty lines are dropped. Nothing else of the text is lost or reordered:
joining the chunks with the consumed separators gives the text back (a lone surrogate, which no network
can carry, becomes U+FFFD).
"""

from __future__ import annotations

from typing import Literal

import regex

Unit = Literal["bytes", "chars"]

_GRAPHEME = regex.compile(r"\X")
_SURROGATE = regex.compile(r"[\ud800-\udfff]")
_LONGEST_GRAPHEME = 64
"""Code points looked at past a cut to find where the grapheme cluster there ends (real clusters are far
shorter; a longer one is cut at a code point boundary)."""


def text_size(text: str, unit: Unit) -> int:
    """The size of ``text`` as a network counts it."""
    return len(text.encode("utf-8")) if unit == "bytes" else len(text)


def split_text(text: str, limit: int, *, unit: Unit = "chars", lines_apart: bool = False) -> list[str]:
    """Chunks of ``text``, each at most ``limit`` in ``unit``, cut where a reader expects a cut (see the
    module docstring). Chunks that hold only whitespace are dropped. Raises ``ValueError`` for a limit
    that cannot hold one character (4 bytes, or 1 character)."""
    if limit < (4 if unit == "bytes" else 1):
        raise ValueError(f"a limit of {limit} {unit} cannot hold one character")
    text = _SURROGATE.sub("\ufffd", text).replace("\r\n", "\n").replace("\r", "\n")
    pieces = text.split("\n") if lines_apart else [text]
    chunks: list[str] = []
    for piece in pieces:
        chunks.extend(_split_piece(piece, limit, unit))
    return [c for c in chunks if c.strip()]


def _split_piece(piece: str, limit: int, unit: Unit) -> list[str]:
    chunks: list[str] = []
    while text_size(piece, unit) > limit:
        end = _fit(piece, limit, unit)
        cut, skip = _cut(piece, end)
        chunks.append(piece[:cut])
        piece = piece[cut + skip :]
    chunks.append(piece)
    return chunks


def _fit(piece: str, limit: int, unit: Unit) -> int:
    """The longest prefix of ``piece`` (in code points) that fits ``limit``, ending on a grapheme cluster
    boundary when one cluster is not larger than the limit by itself. Always at least one code point."""
    if unit == "bytes":
        data = piece.encode("utf-8")[:limit]
        end = len(data.decode("utf-8", "ignore"))  # drops a UTF-8 sequence cut short at the end
    else:
        end = limit
    boundary = 0
    for match in _GRAPHEME.finditer(piece, 0, end + _LONGEST_GRAPHEME):
        if match.end() > end:
            break
        boundary = match.end()
    return boundary or max(1, end)


def _cut(piece: str, end: int) -> tuple[int, int]:
    """Where to cut ``piece[:end]`` and how many separator characters to consume there."""
    half = end // 2
    newline = piece.rfind("\n", 0, end + 1)
    if newline > half:
        return newline, 1
    for index in range(min(end, len(piece) - 1), half, -1):
        if piece[index].isspace():
            return index, 1
    return end, 0
