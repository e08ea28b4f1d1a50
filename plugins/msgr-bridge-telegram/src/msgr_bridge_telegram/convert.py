"""Pure conversion of Telegram payloads into canonical events (no I/O, no state).

A raw payload is one Telegram update as the connector pushed it::

    {"v": 1, "self_id": 1001, "update": {"_": "UpdateNewMessage", "message": {...}, ...},
     "names": {"1002": "Bob"},                      # display names of the users and chats it mentions
     "conversation": "user:1002",                   # deletes in private chats and basic groups
     "txn_id": "...",                               # our own sends, matched by message id
     "reactions": {"added": [[1002, "👍"]], "removed": []}}   # reaction changes (Telegram sends totals)

``update`` is Telethon's ``to_json`` of the TL object. Messages keep their formatting entities, which
Telethon's own HTML unparser turns into canonical HTML; replies, forum topics (threads), mentions, edits,
deletes (for everyone), reactions, read markers both ways, typing and membership changes are converted;
anything else converts to nothing. Garbage raises ``MalformedPayload``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from telethon.extensions import html
from telethon.tl import types

from msgr_bridge import Account, MalformedPayload
from msgr_bridge.schema import (
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

from .fields import EDITED, NEW, PEER_PREFIX, _Bad, _Ctx, _get, _opt, _peer, _when
from .media import attachments


def _entities(raw: Any) -> list[Any]:
    """Telethon entity objects back from their JSON (only ``MessageEntity*`` types, only int fields)."""
    found = []
    for item in raw if isinstance(raw, list) else []:
        name = _get(item, "_", str)
        cls = getattr(types, name, None) if name.startswith("MessageEntity") else None
        if cls is None:
            continue
        fields = {
            k: v for k, v in item.items() if k != "_" and isinstance(v, int | str) and not isinstance(v, bool)
        }
        try:
            found.append(cls(**fields))
        except TypeError:
            raise _Bad(f"bad entity {item!r}") from None
    return found


def _text(message: Mapping[str, Any]) -> tuple[str, str | None, tuple[Mention, ...]]:
    text = message.get("message") or ""
    if not isinstance(text, str):
        raise _Bad("message text is not a string")
    entities = [
        e
        for e in _entities(message.get("entities"))
        if e.offset >= 0 and e.length > 0 and e.offset + e.length <= len(text.encode("utf-16-le")) // 2
    ]
    mentions = tuple(
        Mention(user_id=str(e.user_id), offset=e.offset, length=e.length)
        for e in entities
        if isinstance(e, types.MessageEntityMentionName)
    )
    styled = [e for e in entities if not isinstance(e, types.MessageEntityMentionName)]
    formatted = html.unparse(text, styled) if styled else None
    return text, formatted, mentions


def _reply(message: Mapping[str, Any]) -> tuple[str | None, str | None]:
    header = message.get("reply_to")
    if not isinstance(header, Mapping) or header.get("_") != "MessageReplyHeader":
        return None, None
    target, top = _opt(header, "reply_to_msg_id", int), _opt(header, "reply_to_top_id", int)
    if header.get("forum_topic"):
        topic = top if top is not None else target
        reply = target if top is not None else None
        return (str(reply) if reply is not None else None), (str(topic) if topic is not None else None)
    return (str(target) if target is not None else None), None


def _album(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The later messages of an album merged into this payload (``album.py``)."""
    items = payload.get("album") or []
    if not isinstance(items, list) or not all(
        isinstance(i, Mapping) and isinstance(i.get("message"), Mapping) for i in items
    ):
        raise _Bad("bad album")
    return items


def _joined(
    first: tuple[str, str | None, tuple[Mention, ...]], more: tuple[str, str | None, tuple[Mention, ...]]
) -> tuple[str, str | None, tuple[Mention, ...]]:
    """Two captions of an album as one text (a blank line between; mentions moved along)."""
    if not more[0]:
        return first
    if not first[0]:
        return more
    text = f"{first[0]}\n\n{more[0]}"
    shift = len(f"{first[0]}\n\n".encode("utf-16-le")) // 2
    formatted = None
    if first[1] or more[1]:
        formatted = f"{first[1] or escape(first[0])}\n\n{more[1] or escape(more[0])}"
    moved = tuple(m.model_copy(update={"offset": (m.offset or 0) + shift}) for m in more[2])
    return text, formatted, first[2] + moved


def _sender_id(message: Mapping[str, Any], ctx: _Ctx, peer: tuple[str, int]) -> int:
    from_id = message.get("from_id")
    if isinstance(from_id, Mapping):
        user: int = _peer(from_id)[1]
        return user
    if message.get("out") is True:
        return ctx.self_id
    return peer[1]  # a private chat's incoming message, or a broadcast channel's post


def _message(update: Mapping[str, Any], ctx: _Ctx) -> list[Event]:
    message = _get(update, "message", Mapping)
    kind = _get(message, "_", str)
    if kind == "MessageEmpty":
        return []
    peer = _peer(_get(message, "peer_id", Mapping))
    conversation = f"{peer[0]}:{peer[1]}"
    msg_id = _get(message, "id", int)
    sender = ctx.sender(_sender_id(message, ctx, peer))
    when = _when(message.get("date"))
    if kind == "MessageService":
        return _service(_get(message, "action", Mapping), ctx, conversation, sender, when)
    if kind != "Message":
        raise _Bad(f"unknown message type {kind}")
    text, formatted, mentions = _text(message)
    reply_to, thread = _reply(message)
    txn = ctx.payload.get("txn_id")
    if _get(update, "_", str) in EDITED:
        edited = ctx.base(conversation, _when(message.get("edit_date") or message.get("date")))
        fmt = TextFormat.HTML if formatted else TextFormat.PLAIN
        target = _opt(ctx.payload, "target", str) or str(msg_id)
        return [Edit(**edited, target_id=target, sender=sender, text=text, formatted=formatted, format=fmt)]
    files = list(attachments(message, ctx.payload.get("file")))
    for item in _album(ctx.payload):
        files += attachments(item["message"], item.get("file"))
        text, formatted, mentions = _joined((text, formatted, mentions), _text(item["message"]))
    reply_to = _opt(ctx.payload, "reply_target", str) or reply_to
    return [
        Message(
            **ctx.base(conversation, when),
            remote_id=str(msg_id),
            sender=sender,
            text=text,
            formatted=formatted,
            format=TextFormat.HTML if formatted else TextFormat.PLAIN,
            reply_to=reply_to,
            thread_id=thread,
            mentions=mentions,
            attachments=tuple(files),
            txn_id=txn if isinstance(txn, str) and sender.is_self else None,
        )
    ]


def _service(
    action: Mapping[str, Any], ctx: _Ctx, conversation: str, actor: Sender, when: datetime
) -> list[Event]:
    name = _get(action, "_", str)
    if name == "MessageActionChatAddUser":
        users = [u for u in _get(action, "users", list) if isinstance(u, int) and not isinstance(u, bool)]
        kinds = [
            (u, MembershipAction.JOIN if str(u) == actor.user_id else MembershipAction.INVITE) for u in users
        ]
    elif name in ("MessageActionChatJoinedByLink", "MessageActionChatJoinedByRequest"):
        kinds = [(int(actor.user_id), MembershipAction.JOIN)]
    elif name == "MessageActionChatDeleteUser":
        user = _get(action, "user_id", int)
        kinds = [(user, MembershipAction.LEAVE if str(user) == actor.user_id else MembershipAction.KICK)]
    else:
        return []
    return [
        MembershipChange(
            **ctx.base(conversation, when),
            user=ctx.sender(u),
            action=a,
            actor=None if str(u) == actor.user_id else actor,
        )
        for u, a in kinds
    ]


def _typing(update: Mapping[str, Any], ctx: _Ctx, name: str) -> list[Event]:
    action = _get(update, "action", Mapping)
    active = _get(action, "_", str) != "SendMessageCancelAction"
    if name == "UpdateUserTyping":
        user = _get(update, "user_id", int)
        return [Typing(**ctx.base(f"user:{user}"), user=ctx.sender(user), active=active)]
    key, prefix = ("chat_id", "chat") if name == "UpdateChatUserTyping" else ("channel_id", "channel")
    who = _peer(_get(update, "from_id", Mapping))[1]
    return [Typing(**ctx.base(f"{prefix}:{_get(update, key, int)}"), user=ctx.sender(who), active=active)]


def _read(update: Mapping[str, Any], ctx: _Ctx, name: str) -> list[Event]:
    up_to = str(_get(update, "max_id", int))
    if name in ("UpdateReadChannelOutbox", "UpdateReadChannelInbox"):
        conversation = f"channel:{_get(update, 'channel_id', int)}"
        reader = ctx.sender(ctx.self_id) if name.endswith("Inbox") else Sender(user_id=conversation)
    else:
        peer = _peer(_get(update, "peer", Mapping))
        conversation = f"{peer[0]}:{peer[1]}"
        if name.endswith("Inbox"):
            reader = ctx.sender(ctx.self_id)  # we read it on another device
        else:  # in a group Telegram does not say who read
            reader = ctx.sender(peer[1]) if peer[0] == "user" else Sender(user_id=conversation)
    return [ReadReceipt(**ctx.base(conversation), up_to_id=up_to, reader=reader)]


def _deleted(update: Mapping[str, Any], ctx: _Ctx, name: str) -> list[Event]:
    ids = [i for i in _get(update, "messages", list) if isinstance(i, int) and not isinstance(i, bool)]
    if name == "UpdateDeleteChannelMessages":
        conversation = f"channel:{_get(update, 'channel_id', int)}"
    else:
        conversation = _get(ctx.payload, "conversation", str)
        _peer(_peer_from_id(conversation))
    return [Delete(**ctx.base(conversation), target_id=str(i)) for i in ids]


def _peer_from_id(conversation: str) -> dict[str, Any]:
    kind, _, number = conversation.partition(":")
    spec = {v[0]: (k, v[1]) for k, v in PEER_PREFIX.items()}.get(kind)
    if spec is None or not number.isdigit():
        raise _Bad(f"bad conversation id {conversation!r}")
    return {"_": spec[0], spec[1]: int(number)}


def _reactions(update: Mapping[str, Any], ctx: _Ctx) -> list[Event]:
    peer = _peer(_get(update, "peer", Mapping))
    conversation = f"{peer[0]}:{peer[1]}"
    target = _opt(ctx.payload, "target", str) or str(_get(update, "msg_id", int))
    changes = _get(ctx.payload, "reactions", Mapping)
    events: list[Event] = []
    for key, action in (("added", ReactionAction.ADD), ("removed", ReactionAction.REMOVE)):
        for item in _get(changes, key, list):
            if not (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], int)
                and isinstance(item[1], str)
                and item[1]
            ):
                raise _Bad(f"bad reaction change {item!r}")
            events.append(
                Reaction(
                    **ctx.base(conversation),
                    target_id=target,
                    sender=ctx.sender(item[0]),
                    emoji=item[1],
                    action=action,
                )
            )
    return events  # fmt: skip


def convert(payload: Any, account: Account) -> Sequence[Event]:
    try:
        if _get(payload, "v", int) != 1:
            raise _Bad(f"unknown payload version {payload.get('v')!r}")
        ctx = _Ctx(payload, account)
        update = _get(payload, "update", Mapping)
        name = _get(update, "_", str)
        if name in NEW or name in EDITED:
            return _message(update, ctx)
        if name in ("UpdateDeleteMessages", "UpdateDeleteChannelMessages"):
            return _deleted(update, ctx, name)
        if name == "UpdateMessageReactions":
            return _reactions(update, ctx)
        if name.startswith("UpdateRead") and name.endswith(("Inbox", "Outbox")):
            return _read(update, ctx, name)
        if name in ("UpdateUserTyping", "UpdateChatUserTyping", "UpdateChannelUserTyping"):
            return _typing(update, ctx, name)
        return []
    except (_Bad, ValueError, TypeError, OverflowError, IndexError, KeyError) as exc:
        raise MalformedPayload(f"malformed Telegram payload: {exc}") from exc
