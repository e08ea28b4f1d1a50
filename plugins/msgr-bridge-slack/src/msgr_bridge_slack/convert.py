"""Pure conversion of the payloads the Slack connector pushes into canonical events.

A payload (version ``PAYLOAD_VERSION``) is what the connector received plus what conversion needs to be
pure::

    {"v": 1, "self_id": "U...", "source": "socket_mode" | "rtm" | "history",
     "event": {... the Slack event, as Slack sent it ...},
     "users": {"U123": "Alice", ...}}      # names of the sender and of every <@U...> in the text

``message`` (and its ``thread_broadcast``, ``file_share``, ``me_message``, ``bot_message`` subtypes) ->
``Message`` (``remote_id`` is the ``ts``; ``thread_ts`` other than its own ``ts`` -> ``thread_id``);
``message_changed`` with ``edited`` -> ``Edit`` (without it, Slack only updated reply counts: nothing);
``message_deleted`` -> ``Delete``; ``reaction_added``/``removed`` -> ``Reaction``;
``member_joined_channel``/``member_left_channel`` -> ``MembershipChange``; ``channel_marked``,
``group_marked``, ``im_marked``, ``mpim_marked`` -> ``ReadReceipt`` by the account itself;
``user_typing`` -> ``Typing``. Anything else converts to nothing; a malformed payload raises
``MalformedPayload``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Attachment,
    Conversation,
    ConversationKind,
    Delete,
    Edit,
    Event,
    MembershipAction,
    MembershipChange,
    Message,
    Reaction,
    ReactionAction,
    ReadReceipt,
    Sender,
    TextFormat,
    Typing,
)

from .mrkdwn import emoji_of, to_canonical

NETWORK = "slack"
PAYLOAD_VERSION = 1
MESSAGE_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message", "bot_message"})
MARKED = frozenset({"channel_marked", "group_marked", "im_marked", "mpim_marked"})
CONVERTED = frozenset(
    {
        "message",
        "reaction_added",
        "reaction_removed",
        "member_joined_channel",
        "member_left_channel",
        "user_typing",
        *MARKED,
    }
)
"""The event types ``convert`` turns into events: the only ones the connector hands to the core."""


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"Slack payload field {key!r} is missing or not a string")
    return value


def _map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"Slack payload field {key!r} is missing or not an object")
    return value


def timestamp_of(ts: str) -> datetime:
    try:
        seconds = float(ts)
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedPayload(f"{ts!r} is not a Slack timestamp") from None


class _Context:
    def __init__(self, payload: Mapping[str, Any], account: Account) -> None:
        self.account = account
        self.self_id = _str(payload, "self_id")
        users = payload.get("users") or {}
        if not isinstance(users, Mapping):
            raise MalformedPayload("Slack payload field 'users' must be an object")
        self.users = {str(k): v for k, v in users.items() if isinstance(v, str)}
        media = payload.get("media") or {}
        self.media = media if isinstance(media, Mapping) else {}
        """File id -> ``{"url", "size"}`` where the connector stored it (``media.InboundFiles``)."""

    def sender(self, user_id: str) -> Sender:
        return Sender(user_id=user_id, display_name=self.users.get(user_id), is_self=user_id == self.self_id)

    def base(self, conversation_id: str, ts: str) -> dict[str, Any]:
        return {
            "network": NETWORK,
            "account_id": self.account.id,
            "conversation_id": conversation_id,
            "timestamp": timestamp_of(ts),
        }


def _attachments(message: Mapping[str, Any], stored: Mapping[str, Any]) -> tuple[Attachment, ...]:
    files = message.get("files") or []
    if not isinstance(files, list):
        raise MalformedPayload("Slack message 'files' must be a list")
    out = []
    for f in files:
        if not isinstance(f, Mapping):
            raise MalformedPayload("a Slack file must be an object")
        size, url, file_id = f.get("size"), f.get("url_private"), _str(f, "id")
        saved = stored.get(file_id)
        if isinstance(saved, Mapping) and isinstance(saved.get("url"), str):  # kept in our storage
            size, url = saved.get("size"), saved["url"]
        out.append(
            Attachment(
                name=str(f.get("name") or f.get("title") or "file"),
                mime_type=str(f.get("mimetype") or "application/octet-stream"),
                size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                url=url if isinstance(url, str) else None,
                remote_id=file_id,
            )
        )
    return tuple(out)


def _text_fields(message: Mapping[str, Any], ctx: _Context) -> dict[str, Any]:
    raw = message.get("text") or ""
    if not isinstance(raw, str):
        raise MalformedPayload("Slack message 'text' must be a string")
    rendered = to_canonical(raw, ctx.users)
    formatted = rendered.markdown if rendered.markdown != rendered.plain else None
    return {
        "text": rendered.plain,
        "formatted": formatted,
        "format": TextFormat.MARKDOWN if formatted else TextFormat.PLAIN,
        "mentions": tuple(rendered.mentions),
    }


def _sender_id(message: Mapping[str, Any]) -> str:
    user = message.get("user") or message.get("bot_id")
    if not isinstance(user, str) or not user:
        raise MalformedPayload("a Slack message without a user")
    return user


def _message(event: Mapping[str, Any], ctx: _Context) -> list[Event]:
    ts = _str(event, "ts")
    thread_ts = event.get("thread_ts")
    if thread_ts is not None and not isinstance(thread_ts, str):
        raise MalformedPayload("Slack 'thread_ts' must be a string")
    fields = _text_fields(event, ctx)
    return [
        Message(
            **ctx.base(_str(event, "channel"), ts),
            remote_id=ts,
            sender=ctx.sender(_sender_id(event)),
            attachments=_attachments(event, ctx.media),
            thread_id=thread_ts if thread_ts and thread_ts != ts else None,
            **fields,
        )
    ]


def _changed(event: Mapping[str, Any], ctx: _Context) -> list[Event]:
    message = _map(event, "message")
    if "edited" not in message:
        return []  # a reply count or an unfurl changed, not the text
    fields = _text_fields(message, ctx)
    del fields["mentions"]
    return [
        Edit(
            **ctx.base(_str(event, "channel"), _str(event, "ts")),
            target_id=_str(message, "ts"),
            sender=ctx.sender(_sender_id(message)),
            **fields,
        )
    ]


def convert(payload: Any, account: Account) -> Sequence[Event]:
    if not isinstance(payload, Mapping) or payload.get("v") != PAYLOAD_VERSION:
        raise MalformedPayload(f"not a version {PAYLOAD_VERSION} Slack payload")
    try:
        return _convert(payload, account)
    except MalformedPayload:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # pydantic's errors are ValueErrors
        raise MalformedPayload(f"malformed Slack payload: {type(exc).__name__}: {exc}") from exc


def _convert(payload: Mapping[str, Any], account: Account) -> list[Event]:
    ctx = _Context(payload, account)
    event = _map(payload, "event")
    kind = _str(event, "type")
    if kind == "message":
        subtype = event.get("subtype")
        if subtype in MESSAGE_SUBTYPES:
            return _message(event, ctx)
        if subtype == "message_changed":
            return _changed(event, ctx)
        if subtype == "message_deleted":
            channel = _str(event, "channel")
            return [Delete(**ctx.base(channel, _str(event, "ts")), target_id=_str(event, "deleted_ts"))]
        return []
    if kind in ("reaction_added", "reaction_removed"):
        item = _map(event, "item")
        if item.get("type") != "message":
            return []
        action = ReactionAction.ADD if kind == "reaction_added" else ReactionAction.REMOVE
        return [
            Reaction(
                **ctx.base(_str(item, "channel"), _str(event, "event_ts")),
                target_id=_str(item, "ts"),
                sender=ctx.sender(_str(event, "user")),
                emoji=emoji_of(_str(event, "reaction")),
                action=action,
            )
        ]
    if kind in ("member_joined_channel", "member_left_channel"):
        change = MembershipAction.JOIN if kind == "member_joined_channel" else MembershipAction.LEAVE
        inviter = event.get("inviter")
        base = ctx.base(_str(event, "channel"), str(event.get("event_ts") or payload.get("received_ts") or 0))
        return [
            MembershipChange(
                **base,
                user=ctx.sender(_str(event, "user")),
                action=change,
                actor=ctx.sender(inviter) if isinstance(inviter, str) and inviter else None,
            )
        ]
    if kind in MARKED:
        ts = _str(event, "ts")
        return [
            ReadReceipt(**ctx.base(_str(event, "channel"), ts), up_to_id=ts, reader=ctx.sender(ctx.self_id))
        ]
    if kind == "user_typing":
        base = ctx.base(_str(event, "channel"), str(payload.get("received_ts") or 0))
        return [Typing(**base, user=ctx.sender(_str(event, "user")))]
    return []


def conversation_of(chan: Mapping[str, Any], users: Any, account_id: str) -> Conversation:
    """A Slack conversation object (conversations.list) as a canonical ``Conversation``."""
    kind = ConversationKind.DIRECT if chan.get("is_im") else ConversationKind.GROUP
    if chan.get("is_channel") and not chan.get("is_private"):
        kind = ConversationKind.CHANNEL
    name = chan.get("name")
    if chan.get("is_im"):
        name = users.get(str(chan.get("user")), str(chan.get("user") or ""))
    topic = chan.get("topic")
    return Conversation(
        network=NETWORK,
        account_id=account_id,
        remote_id=str(chan["id"]),
        name=name,
        type=kind,
        topic=topic.get("value") or None if isinstance(topic, Mapping) else None,
    )
