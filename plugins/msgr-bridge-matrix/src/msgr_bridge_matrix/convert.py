"""Pure conversion of Matrix payloads into canonical events (no I/O, no state).

A raw payload is what the connector pushed to the sink, one Matrix event in its room::

    {"room_id": "!abc:example.org", "event": {<the event as /sync or /messages returned it>},
     "sender_name": "Bob",                          # optional: the sender's display name in that room
     "redacted_reaction": {"target_id": ..., "key": ..., "sender": ...},   # optional, see below
     "typing_before": ["@a:example.org"]}           # only with m.typing: who was typing before

A redaction of a reaction is a reaction removal: the redacted event's content is gone by then, so the
connector, which remembers the reactions it saw, adds ``redacted_reaction``; other redactions are
``Delete``. Unknown event types, state other than membership, redacted (emptied) events and
``m.room.encrypted`` convert to nothing; anything not shaped like a Matrix event raises ``MalformedPayload``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Attachment,
    Delete,
    Edit,
    Event,
    MembershipAction,
    MembershipChange,
    Mention,
    Message,
    Reaction,
    ReactionAction,
    ReadReceipt,
    Sender,
    TextFormat,
    Typing,
)

HTML_FORMAT = "org.matrix.custom.html"
MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})
PART_SEPARATOR = "~"
"""Outbound transaction ids of the 2nd, 3rd... event of one split message end in ``~1``, ``~2``..."""
_PART_RE = re.compile(rf"^(?P<txn>.+){PART_SEPARATOR}(?P<part>[1-9][0-9]{{0,3}})$")


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"matrix {what} must be an object, got {type(value).__name__}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"matrix {what} must be a non-empty string, got {value!r}")
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(event: Mapping[str, Any]) -> datetime | None:
    ts = event.get("origin_server_ts")
    if ts is None:
        return None
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise MalformedPayload(f"matrix origin_server_ts must be a number, got {ts!r}")
    try:
        return datetime.fromtimestamp(ts / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedPayload(f"matrix origin_server_ts {ts!r} is out of range") from exc


def _relation(content: Mapping[str, Any]) -> Mapping[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, Mapping) else {}


def _body(content: Mapping[str, Any]) -> dict[str, Any]:
    """``text``, ``formatted`` and ``format`` of a message content; HTML only when the sender said so."""
    text, formatted = content.get("body"), content.get("formatted_body")
    if not isinstance(text, str):
        raise MalformedPayload(f"matrix message body must be a string, got {text!r}")
    if content.get("format") == HTML_FORMAT and isinstance(formatted, str):
        return {"text": text, "formatted": formatted, "format": TextFormat.HTML}
    return {"text": text, "formatted": None, "format": TextFormat.PLAIN}


def _attachment(content: Mapping[str, Any]) -> Attachment:
    url = _str(content.get("url"), "media url")
    info = content.get("info")
    info = info if isinstance(info, Mapping) else {}
    size = info.get("size")
    name = _opt_str(content.get("filename")) or _opt_str(content.get("body")) or url.rsplit("/", 1)[-1]
    return Attachment(
        name=name,
        mime_type=_opt_str(info.get("mimetype")) or "application/octet-stream",
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        url=url,
        remote_id=url,
    )


def _mentions(content: Mapping[str, Any]) -> tuple[Mention, ...]:
    mentions = content.get("m.mentions")
    users = mentions.get("user_ids") if isinstance(mentions, Mapping) else None
    if not isinstance(users, list):
        return ()
    return tuple(Mention(user_id=u) for u in users if isinstance(u, str) and u)


def _message(
    event: Mapping[str, Any], content: Mapping[str, Any], sender: Sender, base: dict[str, Any]
) -> Event:
    rel = _relation(content)
    event_id = _str(event.get("event_id"), "event_id")
    if rel.get("rel_type") == "m.replace":
        new = _body(_obj(content.get("m.new_content"), "m.new_content"))
        target = _str(rel.get("event_id"), "edit target")
        return Edit(**base, target_id=target, remote_id=event_id, sender=sender, **new)
    attachments: tuple[Attachment, ...] = ()
    body = {"text": "", "formatted": None, "format": TextFormat.PLAIN}
    if content.get("msgtype") in MEDIA_MSGTYPES:
        attachments = (_attachment(content),)
        # A body that differs from the file name is a caption (Matrix 1.10); otherwise there is no text.
        filename = _opt_str(content.get("filename"))
        if filename and content.get("body") != filename:
            body = _body(content)
    else:
        body = _body(content)
    thread_id = _opt_str(rel.get("event_id")) if rel.get("rel_type") == "m.thread" else None
    reply = rel.get("m.in_reply_to")
    reply_to = None
    if isinstance(reply, Mapping) and not (thread_id and rel.get("is_falling_back") is True):
        reply_to = _opt_str(reply.get("event_id"))
    txn_id, part = None, 0
    unsigned = event.get("unsigned")
    if isinstance(unsigned, Mapping) and (raw_txn := _opt_str(unsigned.get("transaction_id"))):
        match = _PART_RE.match(raw_txn)
        txn_id, part = (match["txn"], int(match["part"])) if match else (raw_txn, 0)
    return Message(
        **base,
        remote_id=event_id,
        part=part,
        sender=sender,
        **body,
        attachments=attachments,
        reply_to=reply_to,
        thread_id=thread_id,
        mentions=_mentions(content),
        txn_id=txn_id,
    )


def _membership(
    event: Mapping[str, Any], content: Mapping[str, Any], sender: Sender, base: dict[str, Any], self_id: str
) -> list[Event]:
    target = _str(event.get("state_key"), "member state_key")
    membership = content.get("membership")
    unsigned = event.get("unsigned")
    prev = unsigned.get("prev_content") if isinstance(unsigned, Mapping) else None
    prev = prev if isinstance(prev, Mapping) else _obj(event.get("prev_content") or {}, "prev_content")
    before = prev.get("membership")
    name = _opt_str(content.get("displayname"))
    user = Sender(user_id=target, display_name=name, is_self=target == self_id)
    actor = sender if sender.user_id != target else None
    reason = _opt_str(content.get("reason"))
    common: dict[str, Any] = {**base, "user": user, "actor": actor, "reason": reason}
    match membership:
        case "join" if before == "join":
            if name == _opt_str(prev.get("displayname")):
                return []  # an avatar change, or a no-op
            return [MembershipChange(**common, action=MembershipAction.RENAME, new_name=name)]
        case "join":
            return [MembershipChange(**common, action=MembershipAction.JOIN)]
        case "invite":
            return [MembershipChange(**common, action=MembershipAction.INVITE)]
        case "leave" if before == "ban":
            return []  # an unban: the user is not in the room before or after
        case "leave":
            action = MembershipAction.KICK if actor is not None else MembershipAction.LEAVE
            return [MembershipChange(**common, action=action)]
        case "ban":
            return [MembershipChange(**common, action=MembershipAction.BAN)]
        case "knock":
            return []
        case _:
            raise MalformedPayload(f"matrix membership {membership!r} is not a known membership")


def _receipts(content: Mapping[str, Any], base: dict[str, Any], self_id: str) -> list[Event]:
    out: list[Event] = []
    for event_id, by_type in content.items():
        if not isinstance(by_type, Mapping):
            raise MalformedPayload("matrix m.receipt content must map event ids to objects")
        for receipt_type in ("m.read", "m.read.private"):
            readers = by_type.get(receipt_type)
            if readers is None:
                continue
            for user_id, info in _obj(readers, "receipt readers").items():
                ts = _timestamp({"origin_server_ts": info.get("ts")}) if isinstance(info, Mapping) else None
                out.append(
                    ReadReceipt(
                        **{**base, **({"timestamp": ts} if ts else {})},
                        up_to_id=_str(event_id, "receipt event id"),
                        reader=Sender(user_id=_str(user_id, "receipt user"), is_self=user_id == self_id),
                    )
                )
    return out


def _typing(
    payload: Mapping[str, Any], content: Mapping[str, Any], base: dict[str, Any], self_id: str
) -> list[Event]:
    now, before = content.get("user_ids"), payload.get("typing_before", [])
    if not isinstance(now, list) or not isinstance(before, list):
        raise MalformedPayload("matrix m.typing user_ids and typing_before must be lists")
    now_set = {_str(u, "typing user") for u in now}
    before_set = {_str(u, "typing user") for u in before}
    changes = [(u, True) for u in sorted(now_set - before_set)] + [
        (u, False) for u in sorted(before_set - now_set)
    ]
    return [Typing(**base, user=Sender(user_id=u, is_self=u == self_id), active=on) for u, on in changes]


def convert(payload: Mapping[str, Any], account: Account) -> Sequence[Event]:
    """Turn one raw Matrix payload into canonical events; ``MalformedPayload`` on anything malformed."""
    try:
        return _convert(payload, account)
    except MalformedPayload:
        raise
    except (ValidationError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise MalformedPayload(f"matrix payload does not fit the canonical schema: {exc}") from exc


def _convert(payload: Mapping[str, Any], account: Account) -> Sequence[Event]:
    payload = _obj(payload, "payload")
    room_id = _str(payload.get("room_id"), "room_id")
    event = _obj(payload.get("event"), "event")
    etype = _str(event.get("type"), "event type")
    content = _obj(event.get("content"), "event content")
    self_id = account.remote_user_id
    base: dict[str, Any] = {"network": account.network, "account_id": account.id, "conversation_id": room_id}
    if (ts := _timestamp(event)) is not None:
        base["timestamp"] = ts
    if etype == "m.typing":
        return _typing(payload, content, base, self_id)
    if etype == "m.receipt":
        return _receipts(content, base, self_id)
    if etype not in {"m.room.message", "m.reaction", "m.room.redaction", "m.room.member"}:
        return []  # m.room.encrypted too: end-to-end encryption is not supported
    sender_id = _str(event.get("sender"), "sender")
    sender = Sender(
        user_id=sender_id, display_name=_opt_str(payload.get("sender_name")), is_self=sender_id == self_id
    )
    if etype == "m.room.member":
        return _membership(event, content, sender, base, self_id)
    if etype == "m.room.redaction":
        target = _opt_str(content.get("redacts")) or _str(event.get("redacts"), "redaction target")
        reaction = payload.get("redacted_reaction")
        if isinstance(reaction, Mapping):
            return [
                Reaction(
                    **base,
                    target_id=_str(reaction.get("target_id"), "reaction target"),
                    emoji=_str(reaction.get("key"), "reaction key"),
                    action=ReactionAction.REMOVE,
                    sender=Sender(
                        user_id=_str(reaction.get("sender"), "reaction sender"),
                        is_self=reaction.get("sender") == self_id,
                    ),
                )
            ]
        return [Delete(**base, target_id=target, sender=sender)]
    if not content:
        return []  # a redacted event: its content is gone, the redaction itself says what happened
    if etype == "m.reaction":
        rel = _relation(content)
        if rel.get("rel_type") != "m.annotation":
            return []
        return [
            Reaction(
                **base,
                target_id=_str(rel.get("event_id"), "reaction target"),
                emoji=_str(rel.get("key"), "reaction key"),
                sender=sender,
            )
        ]
    return [_message(event, content, sender, base)]
