"""Outbound text styles and mentions, as ``/v2/send`` takes them.

signal-cli-rest-api's ``text_mode: "styled"`` reads markers in the message: ``**bold**``, ``*italic*``,
``~strikethrough~``, ``` `monospace` ``` and ``||spoiler||``. Its parser has no escape and drops every
``*``, ``~``, ``|`` and backtick from the text, and it does not nest. So the canonical formatted text (HTML
or Markdown) is read into runs of text with their styles, and sent styled only when that is lossless: no
run holds one of those characters, and the mentions still point at the same text. Otherwise the plain text
is sent (``text_mode`` left at normal): the words arrive, without their styles. A run with several styles
keeps the outermost one.

Mentions (``Mention.offset``/``length`` count code points of ``text``) become ``{"author", "start",
"length"}`` in UTF-16 code units, the way Signal counts; a mention without a position, or of someone who is
not a Signal number or ACI, is left out (the text still holds the name).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any

from msgr_bridge.schema import Mention, OutboundMessage, TextFormat

CONTROL = frozenset("*~|`")
MARKERS = {"bold": "**", "italic": "*", "strike": "~", "mono": "`", "spoiler": "||"}
HTML_STYLES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strike",
    "strike": "strike",
    "del": "strike",
    "code": "mono",
    "pre": "mono",
    "tg-spoiler": "spoiler",
}
BLOCKS = frozenset({"p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"})
MARKDOWN = re.compile(r"\*\*(.+?)\*\*|__(.+?)__|~~(.+?)~~|\|\|(.+?)\|\||`([^`]+)`|\*(.+?)\*|_(.+?)_", re.S)
MARKDOWN_STYLES = ("bold", "bold", "strike", "spoiler", "mono", "italic", "italic")
ACCOUNT = re.compile(r"^(\+[1-9][0-9]{6,14}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")

Run = tuple[str, str | None]
"""A stretch of text and its style (None: plain)."""


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.runs: list[Run] = []
        self.open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.runs.append(("\n", None))
            return
        style = HTML_STYLES.get(tag)
        if tag == "span" and any(name == "data-mx-spoiler" for name, _ in attrs):
            style = "spoiler"
        self.open.append(style)

    def handle_endtag(self, tag: str) -> None:
        if self.open:
            self.open.pop()
        if tag in BLOCKS and self.runs and not self.runs[-1][0].endswith("\n"):
            self.runs.append(("\n", None))

    def handle_data(self, data: str) -> None:
        style = next((s for s in self.open if s is not None), None)
        self.runs.append((data, style))


def runs_of(formatted: str, fmt: TextFormat) -> list[Run]:
    if fmt is TextFormat.HTML:
        parser = _Html()
        parser.feed(formatted)
        parser.close()
        runs = parser.runs
        if runs and runs[-1] == ("\n", None):
            runs = runs[:-1]
        return runs
    runs: list[Run] = []
    at = 0
    for m in MARKDOWN.finditer(formatted):
        runs.append((formatted[at : m.start()], None))
        group = next(i for i, g in enumerate(m.groups()) if g is not None)
        runs.append((m.group(group + 1), MARKDOWN_STYLES[group]))
        at = m.end()
    runs.append((formatted[at:], None))
    return [r for r in runs if r[0]]


def styled(message: OutboundMessage) -> str | None:
    """The message in signal-cli-rest-api's styled syntax, or None when it should go as plain text."""
    if not message.formatted or message.format not in (TextFormat.HTML, TextFormat.MARKDOWN):
        return None
    runs = runs_of(message.formatted, message.format)
    if not any(style for _, style in runs) or any(CONTROL & set(text) for text, _ in runs):
        return None
    if message.mentions and "".join(text for text, _ in runs) != message.text:
        return None  # the mentions' positions are in ``text``; a different text would move them
    return "".join(
        text if style is None else f"{MARKERS[style]}{text}{MARKERS[style]}" for text, style in runs
    )


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def mentions(text: str, found: Sequence[Mention]) -> list[dict[str, Any]]:
    out = []
    for m in found:
        if m.offset is None or m.length is None or m.offset + m.length > len(text):
            continue
        if not ACCOUNT.match(m.user_id):
            continue
        start = _utf16(text[: m.offset])
        out.append(
            {"author": m.user_id, "start": start, "length": _utf16(text[m.offset : m.offset + m.length])}
        )
    return out


def text_fields(message: OutboundMessage) -> dict[str, Any]:
    """``message`` (and ``text_mode``, ``mentions`` when there are any) of a ``/v2/send`` body."""
    body: dict[str, Any] = {}
    marked = styled(message)
    if marked is not None:
        body.update(message=marked, text_mode="styled")
    else:
        body["message"] = message.text
    found = mentions(message.text, message.mentions)
    if found:
        body["mentions"] = found
    return body
