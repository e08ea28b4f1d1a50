"""Pure conversion of Discord gateway dispatches (as the connector pushed them) into canonical events.

A raw payload wraps one dispatch with what the connector knew when it arrived::

    {"v": 1, "self_id": "<bot user id>", "received_at": "2026-...+00:00", "t": "MESSAGE_CREATE", "d": {...},
     "thread": true,                      # the channel is a thread (its id is also the message's thread_id)
     "own_webhook": true,                 # MESSAGE_*: sent through one of the bridge's webhooks
     "txn_id": "txn-...",                 # MESSAGE_CREATE: our transaction id when this is our own send
                                          # (a bot send's nonce also names it: ``nonce_for``)
     "channels": ["<channel id>", ...]}   # GUILD_MEMBER_*: the guild's channels the member joined or left

Identifiers are Discord's snowflakes: conversation = the channel (a thread is a conversation of its own,
because every action on its messages needs its channel id), user = the user id (a webhook message's
sender is the webhook id), message = the message id. Text keeps Discord's markdown with mentions, channel
links, custom emoji and timestamps made readable; ``formatted`` is the same rendered as HTML.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from msgr_bridge import Account, MalformedPayload
from msgr_bridge.schema import (
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
    Sender,
    TextFormat,
    Typing,
)

from .markdown import readable, render_html

NETWORK = "discord"
PAYLOAD_VERSION = 1
CHAT_TYPES = frozenset({0, 19})
"""Message types that carry chat (default, reply); joins, pins and the like are not messages here."""


BRIDGE_TXN = re.compile(r"^mb-([0-9a-f]{32})$")
NONCE_MARK = "m"


def nonce_for(txn_id: str, part: int) -> str:
    """The ``nonce`` of a bot send (Discord allows 25 characters). The first part of a bridge txn id
    (``mb-`` and 32 hex digits) is encoded reversibly, so an echo replayed after a crash still names its
    transaction; with ``enforce_nonce`` Discord also drops a resend of it for a few minutes."""
    found = BRIDGE_TXN.match(txn_id)
    if found and part == 0:
        return NONCE_MARK + base64.urlsafe_b64encode(bytes.fromhex(found.group(1))).decode().rstrip("=")
    return hashlib.sha256(f"{txn_id}#{part}".encode()).hexdigest()[:25]


def txn_from_nonce(nonce: Any) -> str | None:
    if not isinstance(nonce, str) or len(nonce) != 23 or not nonce.startswith(NONCE_MARK):
        return None
    try:
        raw = base64.urlsafe_b64decode(nonce[1:] + "==")
    except (binascii.Error, ValueError):
        return None
    return f"mb-{raw.hex()}" if len(raw) == 16 else None


def _str(value: Any, what: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise MalformedPayload(f"Discord payload field {what!r} must be an id or a non-empty string")


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedPayload(f"Discord payload field {what!r} must be an ISO timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedPayload(f"bad Discord timestamp {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise MalformedPayload(f"Discord timestamp without a time zone: {value[:40]!r}")
    return parsed


def _name(user: Mapping[str, Any], member: Any = None) -> str | None:
    nick = member.get("nick") if isinstance(member, Mapping) else None
    name = nick or user.get("global_name") or user.get("username")
    return name if isinstance(name, str) else None


class _Ctx:
    def __init__(self, payload: Mapping[str, Any], account: Account) -> None:
        self.self_id = _str(payload.get("self_id"), "self_id")
        self.account = account
        self.received_at = _time(payload.get("received_at"), "received_at")
        data = payload.get("d")
        if not isinstance(data, Mapping):
            raise MalformedPayload("Discord payload field 'd' must be an object")
        self.d: Mapping[str, Any] = data
        self.payload = payload

    def base(self, channel_id: Any, timestamp: datetime | None = None) -> dict[str, Any]:
        return {
            "network": NETWORK,
            "account_id": self.account.id,
            "conversation_id": _str(channel_id, "channel_id"),
            "timestamp": timestamp or self.received_at,
        }

    def sender(self, user: Any, member: Any = None, webhook: bool = False) -> Sender:
        if not isinstance(user, Mapping):
            raise MalformedPayload("Discord payload: the author must be an object")
        uid = _str(user.get("id"), "author.id")
        is_self = uid == self.self_id or (webhook and self.payload.get("own_webhook") is True)
        return Sender(user_id=uid, display_name=_name(user, member), is_self=is_self)

    def user_ref(self) -> Sender:
        member = self.d.get("member")
        user = member.get("user") if isinstance(member, Mapping) else None
        uid = _str(self.d.get("user_id"), "user_id")
        name = _name(user, member) if isinstance(user, Mapping) else None
        return Sender(user_id=uid, display_name=name, is_self=uid == self.self_id)


def _text_fields(ctx: _Ctx, content: Any) -> dict[str, Any]:
    if not isinstance(content, str):
        raise MalformedPayload("Discord payload field 'content' must be a string")
    mentions = ctx.d.get("mentions") or []
    if not isinstance(mentions, list):
        raise MalformedPayload("Discord payload field 'mentions' must be a list")
    names = {str(u.get("id")): _name(u) or str(u.get("id")) for u in mentions if isinstance(u, Mapping)}
    text = readable(content, names)
    html = render_html(text)
    return {
        "text": text,
        "formatted": html,
        "format": TextFormat.HTML if html is not None else TextFormat.PLAIN,
    }


def _attachments(value: Any, stored: Any) -> tuple[Attachment, ...]:
    """Each attachment points at where the connector stored it (the payload's ``media``), if it did."""
    if not isinstance(value, list):
        raise MalformedPayload("Discord payload field 'attachments' must be a list")
    media = stored if isinstance(stored, Mapping) else {}
    out = []
    for a in value:
        att_id = _str(a.get("id"), "attachment.id")
        url, size = _str(a.get("url"), "url"), a.get("size")
        saved = media.get(att_id)
        if isinstance(saved, Mapping) and isinstance(saved.get("url"), str):
            url, size = saved["url"], saved.get("size")
        out.append(
            Attachment(
                name=_str(a.get("filename"), "filename"),
                url=url,
                mime_type=a.get("content_type") or "application/octet-stream",
                size=size,
                remote_id=att_id,
            )
        )
    return tuple(out)


def _message(ctx: _Ctx) -> list[Event]:
    d = ctx.d
    if d.get("type", 0) not in CHAT_TYPES:
        return []
    ref = d.get("message_reference")
    reply_to = ref.get("message_id") if d.get("type") == 19 and isinstance(ref, Mapping) else None
    webhook = d.get("webhook_id") is not None
    mentions = tuple(
        Mention(user_id=_str(u.get("id"), "mention.id"), display=_name(u))
        for u in d.get("mentions") or []
        if isinstance(u, Mapping)
    )
    sender = ctx.sender(d.get("author"), d.get("member"), webhook)
    txn = ctx.payload.get("txn_id") or txn_from_nonce(d.get("nonce"))
    return [
        Message(
            **ctx.base(d.get("channel_id"), _time(d.get("timestamp"), "timestamp")),
            **_text_fields(ctx, d.get("content", "")),
            remote_id=_str(d.get("id"), "id"),
            sender=sender,
            attachments=_attachments(d.get("attachments") or [], ctx.payload.get("media")),
            reply_to=_str(reply_to, "message_reference.message_id") if reply_to is not None else None,
            thread_id=_str(d.get("channel_id"), "channel_id") if ctx.payload.get("thread") is True else None,
            mentions=mentions,
            txn_id=txn if isinstance(txn, str) and sender.is_self else None,
        )
    ]


def _edit(ctx: _Ctx) -> list[Event]:
    d = ctx.d
    if "content" not in d or "author" not in d:
        return []  # an embed unfurled, a pin: nothing a person edited
    stamp = d.get("edited_timestamp")
    fields = _text_fields(ctx, d["content"])
    return [
        Edit(
            **ctx.base(d.get("channel_id"), _time(stamp, "edited_timestamp") if stamp else None),
            target_id=_str(d.get("id"), "id"),
            sender=ctx.sender(d["author"], d.get("member"), "webhook_id" in d),
            **fields,
        )
    ]


def _members(ctx: _Ctx, action: MembershipAction) -> list[Event]:
    user = ctx.d.get("user")
    sender = ctx.sender(user, ctx.d if action is MembershipAction.JOIN else None)
    channels = ctx.payload.get("channels", [])
    if not isinstance(channels, list):
        raise MalformedPayload("Discord payload field 'channels' must be a list of channel ids")
    return [MembershipChange(**ctx.base(c), user=sender, action=action) for c in channels]


def convert(payload: Mapping[str, Any], account: Account) -> Sequence[Event]:
    """Convert one raw Discord payload; raises ``MalformedPayload`` (and nothing else) on bad input."""
    try:
        if not isinstance(payload, Mapping):
            raise MalformedPayload("Discord payload must be a mapping")
        if payload.get("v") != PAYLOAD_VERSION:
            raise MalformedPayload(f"unknown Discord payload version {payload.get('v')!r}")
        ctx = _Ctx(payload, account)
        event, d = payload.get("t"), ctx.d
        if event == "MESSAGE_CREATE":
            return _message(ctx)
        if event == "MESSAGE_UPDATE":
            return _edit(ctx)
        if event == "MESSAGE_DELETE":
            return [Delete(**ctx.base(d.get("channel_id")), target_id=_str(d.get("id"), "id"))]
        if event == "MESSAGE_DELETE_BULK":
            return [
                Delete(**ctx.base(d.get("channel_id")), target_id=_str(i, "ids")) for i in d.get("ids", [])
            ]
        if event in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE"):
            emoji = d.get("emoji")
            if not isinstance(emoji, Mapping):
                raise MalformedPayload("Discord reaction without an emoji object")
            name = _str(emoji.get("name"), "emoji.name")
            action = ReactionAction.ADD if event.endswith("ADD") else ReactionAction.REMOVE
            return [
                Reaction(
                    **ctx.base(d.get("channel_id")),
                    target_id=_str(d.get("message_id"), "message_id"),
                    sender=ctx.user_ref(),
                    emoji=f":{name}:" if emoji.get("id") else name,
                    action=action,
                )
            ]
        if event == "TYPING_START":
            return [Typing(**ctx.base(d.get("channel_id")), user=ctx.user_ref(), active=True)]
        if event == "GUILD_MEMBER_ADD":
            return _members(ctx, MembershipAction.JOIN)
        if event == "GUILD_MEMBER_REMOVE":
            return _members(ctx, MembershipAction.LEAVE)
        return []
    except MalformedPayload:
        raise
    except Exception as exc:  # pydantic validation and anything unforeseen: quarantine, never crash
        raise MalformedPayload(f"Discord payload could not be converted: {exc}") from exc
