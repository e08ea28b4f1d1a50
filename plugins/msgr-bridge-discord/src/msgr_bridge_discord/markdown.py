"""Discord's markdown, made readable (mentions, channel links, custom emoji, timestamps) and rendered as HTML.

mistune does the markdown (escaping included); two small inline plugins add what Discord has beyond
CommonMark: ``__underline__`` (CommonMark reads it as bold) and ``||spoilers||``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import mistune

TOKEN = re.compile(r"<(@!?|@&|#)(\d{1,20})>|<a?:(\w{1,32}):\d{1,20}>|<t:(-?\d{1,13})(?::[tTdDfFR])?>")


def _spoiler(md: Any) -> None:
    md.inline.register(
        "spoiler",
        r"\|\|(?P<spoiler_text>[\s\S]+?)\|\|",
        lambda inline, m, state: _span(inline, m, state, "spoiler", "spoiler_text"),
        before="emphasis",
    )
    md.renderer.register("spoiler", lambda _r, text: f"<span data-mx-spoiler>{text}</span>")


def _underline(md: Any) -> None:
    md.inline.register(
        "underline",
        r"__(?P<underline_text>[^_\s](?:[\s\S]*?[^_\s])?)__(?!_)",
        lambda inline, m, state: _span(inline, m, state, "underline", "underline_text"),
        before="emphasis",
    )
    md.renderer.register("underline", lambda _r, text: f"<u>{text}</u>")


def _span(inline: Any, m: re.Match[str], state: Any, kind: str, group: str) -> int:
    child = state.copy()
    child.src = m.group(group)
    state.append_token({"type": kind, "children": inline.render(child)})
    return m.end()


_MARKDOWN = mistune.create_markdown(
    escape=True, hard_wrap=True, plugins=["strikethrough", _spoiler, _underline]
)


def render_html(text: str) -> str | None:
    """Discord markdown as HTML; None when the text has no formatting at all."""
    html = str(_MARKDOWN(text)).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        inner = html[3:-4]
        if "<" not in inner.replace("<br />", ""):
            return None
        html = inner
    return html


def readable(content: str, mentions: Mapping[str, str]) -> str:
    """Mentions, channel links, custom emoji and timestamps as a person reads them."""

    def token(m: re.Match[str]) -> str:
        kind, ident, emoji, stamp = m.groups()
        if emoji is not None:
            return f":{emoji}:"
        if stamp is not None:
            return datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%d %H:%M UTC")
        if kind == "#":
            return f"#{ident}"
        if kind == "@&":
            return f"@role-{ident}"
        return f"@{mentions.get(ident, ident)}"

    return TOKEN.sub(token, content)
