"""Pure IRC: parsing wire lines (IRCv3 tags, case mapping, synthesized ids) and converting raw payloads into
canonical events. No I/O. (Splitting text and pacing sends are the SDK's: ``sdk.text``, ``sdk.pacing``.)

A raw payload is what the connector pushed to the sink for one IRC line (JSON-compatible)::

    {"v": 1, "server": "irc.example.net", "self_nick": "bridge", "received_at": "2026-...Z",
     "line": "@time=...;msgid=... :alice!a@host PRIVMSG #chan :hello",
     "channels": ["#chan"],            # QUIT and NICK only: channels we shared with that nick
     "casemapping": "ascii", "chantypes": "#&+"}   # from the server's ISUPPORT, optional

Conversation ids are ``<server>/<#channel>`` or ``<server>/<nick>`` (the other person), user ids
``<server>/<nick>``, all case-folded by the server's case mapping. Message ids are the IRCv3 ``msgid`` tag,
else ``synth_id`` (stable for one payload, so a quarantined payload re-converts to the same id). Each line
is its own ``Message`` (``part=0``): nothing on the wire says which lines of a long message belonged
together (our sends list the later lines' ids in ``SendResult.extra_parts``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from msgr_bridge import Account, MalformedPayload, MembershipChange, Message, Sender
from msgr_bridge.schema import Event, MembershipAction

NETWORK = "irc"
PAYLOAD_VERSION = 1

# --- the wire ---------------------------------------------------------------------------------------------

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


# --- conversion ------------------------------------------------------------------------------------------


def _text(payload: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = payload.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedPayload(f"IRC payload field {key!r} must be a non-empty string")
    return value


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedPayload(f"bad IRC timestamp {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise MalformedPayload(f"IRC timestamp without a time zone: {value[:40]!r}")
    return parsed


def _ctcp(text: str) -> tuple[str, str] | None:
    """``("ACTION", "waves")`` for a CTCP body, ``None`` for plain text."""
    if not text.startswith("\x01"):
        return None
    body = text.strip("\x01")
    verb, _, rest = body.partition(" ")
    return verb.upper(), rest


class _Ctx:
    def __init__(self, payload: Mapping[str, Any], account: Account) -> None:
        self.server = irc_lower(_text(payload, "server"), "ascii")
        self.self_nick = _text(payload, "self_nick")
        self.casemapping = _text(payload, "casemapping", required=False) or "rfc1459"
        self.chantypes = _text(payload, "chantypes", required=False) or "#&+!"
        self.account = account
        self.received_at = _text(payload, "received_at")

    def fold(self, name: str) -> str:
        return irc_lower(name, self.casemapping)

    def conv(self, name: str) -> str:
        return f"{self.server}/{self.fold(name)}"

    def sender(self, nick: str) -> Sender:
        if not nick or " " in nick:
            raise MalformedPayload(f"bad IRC nick {nick[:40]!r}")
        return Sender(
            user_id=self.conv(nick),
            display_name=nick,
            is_self=self.fold(nick) == self.fold(self.self_nick),
        )

    def base(self, conversation: str, line: IrcLine) -> dict[str, Any]:
        stamp = line.tags.get("time") or self.received_at
        return {
            "network": NETWORK,
            "account_id": self.account.id,
            "conversation_id": self.conv(conversation),
            "timestamp": _timestamp(stamp),
        }


def _message(ctx: _Ctx, line: IrcLine) -> list[Event]:
    if not line.from_user or len(line.params) < 2:
        return []  # server notices and malformed-but-harmless lines carry no chat message
    target, text = line.params[0], line.params[1]
    ctcp = _ctcp(text)
    if ctcp is not None:
        if ctcp[0] != "ACTION":
            return []  # CTCP requests (VERSION, PING...) are not chat messages
        text = f"/me {ctcp[1]}"
    bare_target = target.lstrip("@+%~&") if is_channel(target.lstrip("@+%~&"), ctx.chantypes) else target
    sender = ctx.sender(line.nick)
    if is_channel(bare_target, ctx.chantypes):
        conversation = bare_target
    else:
        conversation = bare_target if sender.is_self else line.nick
    stamp = line.tags.get("time") or ctx.received_at
    remote_id = line.tags.get("msgid") or synth_id(stamp, ctx.fold(line.nick), ctx.fold(bare_target), text)
    label = line.tags.get("label")
    return [
        Message(
            **ctx.base(conversation, line),
            remote_id=remote_id,
            sender=sender,
            text=text,
            txn_id=label if sender.is_self and label else None,
        )
    ]


def _membership(ctx: _Ctx, line: IrcLine, payload: Mapping[str, Any]) -> list[Event]:
    if not line.from_user:
        raise MalformedPayload(f"IRC {line.command} without a user prefix")
    user = ctx.sender(line.nick)
    cmd = line.command
    if cmd in ("JOIN", "PART"):
        channel = line.param(0)
        if not is_channel(channel, ctx.chantypes):
            raise MalformedPayload(f"IRC {cmd} for a non-channel {channel[:40]!r}")
        action = MembershipAction.JOIN if cmd == "JOIN" else MembershipAction.LEAVE
        reason = line.param(1) or None if cmd == "PART" else None
        return [MembershipChange(**ctx.base(channel, line), user=user, action=action, reason=reason)]
    if cmd == "KICK":
        channel, kicked = line.param(0), line.param(1)
        if not is_channel(channel, ctx.chantypes) or not kicked:
            raise MalformedPayload("IRC KICK needs a channel and a nick")
        return [
            MembershipChange(
                **ctx.base(channel, line),
                user=ctx.sender(kicked),
                action=MembershipAction.KICK,
                reason=line.param(2) or None,
                actor=user,
            )
        ]
    channels = payload.get("channels", [])
    if not isinstance(channels, list) or not all(
        isinstance(c, str) and is_channel(c, ctx.chantypes) for c in channels
    ):
        raise MalformedPayload("IRC payload field 'channels' must be a list of channel names")
    if cmd == "QUIT":
        reason = line.param(0) or None
        return [
            MembershipChange(**ctx.base(c, line), user=user, action=MembershipAction.LEAVE, reason=reason)
            for c in channels
        ]
    new_nick = line.param(0)
    if not new_nick or " " in new_nick:
        raise MalformedPayload("IRC NICK without a new nick")
    return [
        MembershipChange(**ctx.base(c, line), user=user, action=MembershipAction.RENAME, new_name=new_nick)
        for c in channels
    ]


_MEMBERSHIP = frozenset({"JOIN", "PART", "KICK", "QUIT", "NICK"})


def convert(payload: Mapping[str, Any], account: Account) -> Sequence[Event]:
    """Convert one raw IRC payload; raises ``MalformedPayload`` (and nothing else) on bad input."""
    try:
        if not isinstance(payload, Mapping):
            raise MalformedPayload("IRC payload must be a mapping")
        if payload.get("v") != PAYLOAD_VERSION:
            raise MalformedPayload(f"unknown IRC payload version {payload.get('v')!r}")
        ctx = _Ctx(payload, account)
        try:
            line = parse_line(_text(payload, "line"))
        except ValueError as exc:
            raise MalformedPayload(str(exc)) from exc
        if line.command in ("PRIVMSG", "NOTICE"):
            return _message(ctx, line)
        if line.command in _MEMBERSHIP:
            return _membership(ctx, line, payload)
        return []
    except MalformedPayload:
        raise
    except Exception as exc:  # pydantic validation and anything unforeseen: quarantine, never crash
        raise MalformedPayload(f"IRC payload could not be converted: {exc}") from exc
