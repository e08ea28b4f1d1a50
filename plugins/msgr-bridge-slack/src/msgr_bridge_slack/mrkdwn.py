"""Slack's mrkdwn to and from the bridge's canonical text (plain text plus CommonMark), pure functions.

Inbound, ``<@U123>`` becomes ``@name`` (names from the user cache the connector puts in each payload),
``<#C123|general>`` becomes ``#general``, ``<url|label>`` a link, ``<!here>`` ``@here``; ``*bold*``,
``_italic_``, ``~strike~``, code spans, code blocks and ``>`` quotes become their CommonMark forms, and
emoji shortcodes (``:tada:``) the emoji. Outbound goes the other way; ``&``, ``<`` and ``>`` are escaped
as Slack requires, so text can never forge a mention or a link.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import emoji

from msgr_bridge.schema import Mention, OutboundMessage, TextFormat

TOKEN = re.compile(r"<([^<>\n]{1,2000})>")
SHORTCODE = re.compile(r":([a-z0-9_+\-']{1,60}):")
CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.S)
STYLE = (
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), "**", "*"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), "*", "_"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), "~~", "~"),
)
MD_EMPHASIS = re.compile(
    r"\*\*(?=\S)(?P<bold>[^*\n]+?)(?<=\S)\*\*|(?<![\w*])\*(?=\S)(?P<italic>[^*\n]+?)(?<=\S)\*(?![\w*])"
)
MD_STRIKE = re.compile(r"~~(?=\S)([^~\n]+?)(?<=\S)~~")
MD_LINK = re.compile(r"\[([^\]\n]{1,500})\]\(([a-z][a-z0-9+.\-]*:[^)\s]{1,2000})\)")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def emoji_of(name: str) -> str:
    """The emoji of a Slack shortcode name (``thumbsup``, ``+1``, ``tada``), or ``:name:`` when unknown."""
    base = name.split("::", 1)[0]
    found = emoji.emojize(f":{base}:", language="alias")
    return found if found != f":{base}:" else f":{name}:"


def shortcode_of(value: str) -> str:
    """The Slack reaction name of an emoji (``👍`` -> ``+1``); a ``:name:`` shortcode passes through."""
    if value.startswith(":") and value.endswith(":") and len(value) > 2:
        return value.strip(":")
    name = emoji.demojize(value, language="alias").strip(":")
    return {"thumbsup": "+1", "thumbsdown": "-1"}.get(name, name)


@dataclass
class Rendered:
    plain: str = ""
    markdown: str = ""
    mentions: list[Mention] = field(default_factory=list)

    def add(self, plain: str, markdown: str | None = None) -> None:
        self.plain += plain
        self.markdown += plain if markdown is None else markdown


def _token(inner: str, users: Mapping[str, str], out: Rendered) -> None:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        user_id = target[1:]
        shown = "@" + (users.get(user_id) or label or user_id)
        out.mentions.append(
            Mention(user_id=user_id, display=shown[1:], offset=len(out.plain), length=len(shown))
        )
        out.add(shown)
    elif target.startswith("#"):
        out.add("#" + (label or target[1:]))
    elif target.startswith("!"):
        special = target[1:].split("^", 1)[0]
        out.add(unescape(label) if label else "@" + special)
    else:
        url = unescape(target)
        text = unescape(label) if label else url
        out.add(text, f"[{text}]({url})" if label else url)


def _styled(text: str) -> str:
    for pattern, md, _ in STYLE:
        text = pattern.sub(_wrap(md), text)
    return text


def _wrap(mark: str) -> Callable[[re.Match[str]], str]:
    def wrap(m: re.Match[str]) -> str:
        return f"{mark}{m.group(1)}{mark}"

    return wrap


def _emoji(text: str) -> str:
    """Known shortcodes become their emoji; unknown ones (custom workspace emoji) stay as typed."""
    return SHORTCODE.sub(lambda m: emoji_of(m.group(1)), text) if ":" in text else text


def _plain_run(text: str, out: Rendered) -> None:
    """Text between tokens: entities, emoji, and (in the Markdown) styles; code is left as it is."""
    for index, piece in enumerate(CODE.split(text)):
        if index % 2:
            out.add(unescape(piece))
        else:
            plain = _emoji(unescape(piece))
            out.add(plain, _styled(plain))


def to_canonical(text: str, users: Mapping[str, str]) -> Rendered:
    """Slack mrkdwn -> plain text, CommonMark, and the mentions (offsets into the plain text)."""
    out = Rendered()
    position = 0
    for match in TOKEN.finditer(text):
        _plain_run(text[position : match.start()], out)
        _token(match.group(1), users, out)
        position = match.end()
    _plain_run(text[position:], out)
    out.markdown = "\n".join(
        "> " + line[5:] if line.startswith("&gt; ") else line for line in out.markdown.split("\n")
    )
    return out


def _emphasis(m: re.Match[str]) -> str:
    """``**bold**`` -> ``*bold*``, ``*italic*`` -> ``_italic_``, in one pass (a second would re-read the
    first's output)."""
    return f"*{m.group('bold')}*" if m.group("bold") is not None else f"_{m.group('italic')}_"


def _md_piece(piece: str) -> str:
    links: list[str] = []

    def keep(m: re.Match[str]) -> str:
        links.append(f"<{m.group(2).replace('|', '%7C')}|{escape(m.group(1))}>")
        return f"\x00{len(links) - 1}\x00"

    def put_back(m: re.Match[str]) -> str:
        return links[int(m.group(1))]

    piece = escape(MD_LINK.sub(keep, piece))
    piece = MD_EMPHASIS.sub(_emphasis, piece)
    piece = MD_STRIKE.sub(_wrap("~"), piece)
    return re.sub(r"\x00(\d+)\x00", put_back, piece)


def from_markdown(markdown: str) -> str:
    """CommonMark (the subset people type) -> Slack mrkdwn, escaped."""
    pieces = CODE.split(markdown)
    return "".join(escape(p) if i % 2 else _md_piece(p) for i, p in enumerate(pieces))


def mrkdwn_of(message: OutboundMessage) -> str:
    """What to send for an outbound message: its Markdown converted, else its text with its mentions."""
    if message.format == TextFormat.MARKDOWN and message.formatted:
        return from_markdown(message.formatted)
    return with_mentions(message.text, message.mentions)


def with_mentions(text: str, mentions: tuple[Mention, ...]) -> str:
    """Escape plain ``text`` for Slack and turn the mentioned ranges into ``<@U123>``."""
    spans = sorted(
        (m for m in mentions if m.offset is not None and m.length and m.user_id.startswith(("U", "W"))),
        key=lambda m: m.offset or 0,
    )
    out, position = [], 0
    for m in spans:
        start = m.offset or 0
        if start < position or start + (m.length or 0) > len(text):
            continue
        out += [escape(text[position:start]), f"<@{m.user_id}>"]
        position = start + (m.length or 0)
    out.append(escape(text[position:]))
    return "".join(out)
