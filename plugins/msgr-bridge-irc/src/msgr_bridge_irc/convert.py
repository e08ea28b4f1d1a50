"""Pure conversion of IRC raw payloads into canonical events.

A raw payload is what the connector pushed to the sink for one IRC line (JSON-compatible)::

    {"v": 1, "server": "irc.example.net", "self_nick": "bridge", "received_at": "2026-...Z",
     "line": "@time=...;msgid=... :alice!a@host PRIVMSG #chan :hello",
     "channels": ["#chan"],            # QUIT and NICK only: channels we shared with that nick
     "casemapping": "ascii", "chantypes": "#&+"}   # from the server's ISUPPORT, optional

Identifiers:

- conversation ids are ``<server>/<#channel>`` for channels and ``<server>/<nick>`` for private messages
  (the other person's nick), both case-folded with the server's case mapping;
- user ids are ``<server>/<nick>`` case-folded; ``display_name`` keeps the nick as written;
- message ids are the IRCv3 ``msgid`` tag when the server sends one, otherwise ``synth_id`` of
  (server-time or receive time, sender, target, text): stable for one payload, so re-converting a
  quarantined payload gives the same id.

Parts: IRC has no multi-part messages. A long or multi-line message we send goes out as several IRC lines
(``SendResult.extra_parts`` holds the ids of lines after the first); each line that arrives is its own
``Message`` with ``part=0``, because nothing on the wire says which lines belonged together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from msgr_bridge import Account, MalformedPayload, MembershipChange, Message, Sender
from msgr_bridge.schema import Event, MembershipAction

from .wire import IrcLine, irc_lower, is_channel, parse_line, synth_id

NETWORK = "irc"
PAYLOAD_VERSION = 1


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
