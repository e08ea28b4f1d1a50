"""Pure IRC wire helpers: parsing lines (with IRCv3 tags), case mapping, the room a line leaves for text,
and synthesized message ids. No I/O here, so all of it is unit-testable. (Splitting text and pacing sends
are the SDK's: ``msgr_bridge.sdk.text`` and ``msgr_bridge.sdk.pacing``.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

LINE_LIMIT = 512
"""RFC 1459/2812: a line is at most 512 bytes including the prefix the server adds and the CRLF.
IRCv3 message tags have their own budget and do not count here."""

DEFAULT_HOSTMASK_ROOM = 1 + 10 + 1 + 63
"""Bytes assumed for ``!user@host`` (USERLEN 10, a 63-byte host) until the server shows our hostmask."""

_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


@dataclass(frozen=True, slots=True)
class IrcLine:
    """One parsed IRC line. ``nick`` is the prefix up to ``!`` (a server name when no ``!``)."""

    command: str
    params: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    prefix: str = ""

    @property
    def nick(self) -> str:
        return self.prefix.split("!", 1)[0]

    @property
    def from_user(self) -> bool:
        """True when the prefix is a user (``nick!user@host``), not a server."""
        return "!" in self.prefix

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if index < len(self.params) else default


def unescape_tag_value(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append(_TAG_UNESCAPE.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def parse_line(raw: str) -> IrcLine:
    """Parse one line (without CRLF). Raises ``ValueError`` for a line with no command."""
    rest = raw.strip("\r\n")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        tag_part, _, rest = rest[1:].partition(" ")
        for item in tag_part.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = unescape_tag_value(value)
        rest = rest.lstrip(" ")
    prefix = ""
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing: str | None = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    words = [w for w in rest.split(" ") if w]
    if not words:
        raise ValueError(f"IRC line without a command: {raw[:80]!r}")
    params = words[1:] + ([trailing] if trailing is not None else [])
    return IrcLine(command=words[0].upper(), params=tuple(params), tags=tags, prefix=prefix)


def irc_lower(text: str, casemapping: str = "rfc1459") -> str:
    """Lower-case by the server's CASEMAPPING (ISUPPORT); ``rfc1459`` also folds ``[]\\~`` to ``{}|^``."""
    lowered = text.lower()
    if casemapping == "ascii":
        return lowered
    table: dict[str, str | int | None] = {"[": "{", "]": "}", "\\": "|"}
    if casemapping != "strict-rfc1459":
        table["~"] = "^"
    return lowered.translate(str.maketrans(table))


def is_channel(target: str, chantypes: str = "#&+!") -> bool:
    return bool(target) and target[0] in chantypes


def text_budget(nick: str, hostmask_room: int, command: str, target: str) -> int:
    """Bytes left for the text of ``:<nick>!<user>@<host> <COMMAND> <target> :<text>\\r\\n``."""
    overhead = 1 + len(nick.encode()) + hostmask_room + 1 + len(command) + 1 + len(target.encode()) + 2 + 2
    return LINE_LIMIT - overhead


def synth_id(timestamp: str, sender: str, target: str, text: str) -> str:
    """A stable id for a message that has no ``msgid`` tag: a hash of when, who, where and what.

    ``timestamp`` is the server-time tag when the server sent one, otherwise our receive (or send) time,
    recorded once in the raw payload, so converting the same payload again gives the same id.
    """
    digest = hashlib.sha256("\x1f".join((timestamp, sender, target, text)).encode()).hexdigest()
    return f"irc-{digest[:32]}"
