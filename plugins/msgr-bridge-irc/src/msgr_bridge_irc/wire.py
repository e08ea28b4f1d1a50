"""Pure IRC wire helpers: parsing lines (with IRCv3 tags), case mapping, splitting text to the line limit,
the client-side flood bucket and synthesized message ids. No I/O here, so all of it is unit-testable.
"""

from __future__ import annotations

import hashlib
import time
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


def _cut_utf8(data: bytes, limit: int) -> int:
    """The largest cut <= limit that does not fall inside a UTF-8 sequence."""
    cut = min(limit, len(data))
    while 0 < cut < len(data) and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def split_text(text: str, budget: int) -> list[str]:
    """Split text into IRC-safe chunks of at most ``budget`` UTF-8 bytes each.

    Each line of the text becomes at least one chunk (IRC lines cannot contain CR or LF); empty lines
    are dropped. A long line is cut at the last whitespace within the budget when there is one in its
    second half, otherwise at the last UTF-8 character boundary; the whitespace at a cut is consumed.
    """
    if budget < 8:
        raise ValueError(f"no room for text on an IRC line (budget {budget} bytes)")
    chunks: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").split("\n"):
        data = line.encode("utf-8")
        while data.strip():
            if len(data) <= budget:
                chunks.append(data.decode("utf-8").strip(" "))
                break
            cut = _cut_utf8(data, budget)
            space = data.rfind(b" ", 0, cut + 1)
            if space > budget // 2:
                chunks.append(data[:space].decode("utf-8"))
                data = data[space + 1 :]
            else:
                chunks.append(data[:cut].decode("utf-8"))
                data = data[cut:]
    return [c for c in chunks if c]


def synth_id(timestamp: str, sender: str, target: str, text: str) -> str:
    """A stable id for a message that has no ``msgid`` tag: a hash of when, who, where and what.

    ``timestamp`` is the server-time tag when the server sent one, otherwise our receive (or send) time,
    recorded once in the raw payload, so converting the same payload again gives the same id.
    """
    digest = hashlib.sha256("\x1f".join((timestamp, sender, target, text)).encode()).hexdigest()
    return f"irc-{digest[:32]}"


class TokenBucket:
    """Client-side flood control: ``rate`` lines per second sustained, ``burst`` at once.

    ngIRCd does not disconnect a flooding client; it stops reading from it (penalty time), so lines queue
    up and latency grows (measured: a 300-line burst drains at about 2.5 lines/s, a steady 3 lines/s
    passes without delay). The defaults stay under that. ``reserve(n)`` books ``n`` tokens and returns
    how long to wait before the last of them is due; ``delay_for(n)`` only asks.
    """

    def __init__(self, rate: float, burst: int, *, clock: object = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("flood control needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = self._now()

    def _now(self) -> float:
        clock = self._clock
        assert callable(clock)
        return float(clock())

    def _refill(self) -> None:
        now = self._now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay_for(self, count: int) -> float:
        self._refill()
        missing = count - self._tokens
        return max(0.0, missing / self.rate)

    def reserve(self, count: int) -> float:
        delay = self.delay_for(count)
        self._tokens -= count
        return delay
