"""Pure conversion of the connector's raw payloads into canonical events.

A payload is what ``connector.py`` pushes: a neonize event protobuf turned into a JSON-compatible dict with
``google.protobuf.json_format.MessageToDict`` (proto field names kept, bytes as base64, 64-bit numbers as
strings), wrapped as ``{"v": 1, "kind": ..., "self": <our jid>, "event": {...}}``. Kinds: ``message`` (a
neonize ``Message`` event: text, extended text, media with ``media`` naming where each file was stored,
replies, edits, revokes, reactions), ``history`` (one ``WebMessageInfo`` of a history sync, with its
``chat``), ``receipt`` (``Receipt``), ``presence`` (``ChatPresence``: typing) and ``group``
(``GroupInfoEvent``: joins, leaves, renames). Anything malformed raises ``MalformedPayload``.
"""

from __future__ import annotations

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
    Typing,
)

NETWORK = "whatsapp"
PAYLOAD_VERSION = 1
MEDIA_KINDS = {
    "imageMessage": "image",
    "videoMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
    "ptvMessage": "video",
}
WRAPPERS = ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "documentWithCaptionMessage")
READ_TYPES = {"READ", "READ_SELF", "PLAYED"}
Json = Mapping[str, Any]


def _map(value: Any, what: str) -> Json:
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"WhatsApp payload: {what} is not an object")
    return value


def jid_text(jid: Any) -> str:
    """``user@server`` of a JID dict (``{"User": ..., "Server": ...}``) or of a JID string."""
    if isinstance(jid, str):
        user, _, server = jid.partition("@")
        return f"{user.split(':')[0]}@{server}" if user and server else ""
    if isinstance(jid, Mapping) and jid.get("User") and jid.get("Server"):
        return f"{jid['User']}@{jid['Server']}"
    return ""


def _time(value: Any) -> datetime:
    seconds = int(value or 0)
    if seconds > 100_000_000_000:  # milliseconds
        seconds //= 1000
    return datetime.fromtimestamp(max(0, seconds), UTC)


def unwrap(message: Json) -> Json:
    """The content inside ephemeral, view-once, document-with-caption and edit envelopes."""
    for _ in range(4):
        for wrapper in (*WRAPPERS, "editedMessage"):
            inner = message.get(wrapper)
            if isinstance(inner, Mapping) and isinstance(inner.get("message"), Mapping):
                message = inner["message"]
                break
        else:
            return message
    return message


def text_of(message: Json) -> str:
    if isinstance(message.get("conversation"), str):
        return str(message["conversation"])
    extended = message.get("extendedTextMessage")
    if isinstance(extended, Mapping):
        return str(extended.get("text") or "")
    for kind in MEDIA_KINDS:
        media = message.get(kind)
        if isinstance(media, Mapping):
            return str(media.get("caption") or "")
    if isinstance(message.get("contactMessage"), Mapping):
        return f"[contact] {message['contactMessage'].get('displayName') or ''}".strip()
    location = message.get("locationMessage")
    if isinstance(location, Mapping):
        return f"[location] {location.get('degreesLatitude')}, {location.get('degreesLongitude')}"
    return ""


def context_of(message: Json) -> Json:
    for value in message.values():
        if isinstance(value, Mapping) and isinstance(value.get("contextInfo"), Mapping):
            return _map(value["contextInfo"], "contextInfo")
    return {}


def attachments_of(message: Json, stored: Sequence[Any]) -> tuple[Attachment, ...]:
    found = []
    for kind, label in MEDIA_KINDS.items():
        media = message.get(kind)
        if not isinstance(media, Mapping):
            continue
        where = stored[0] if stored and isinstance(stored[0], Mapping) else {}
        mime = str(media.get("mimetype") or "application/octet-stream").split(";")[0].strip()
        extension = mime.rsplit("/", 1)[-1] if "/" in mime else "bin"
        size = int(media.get("fileLength") or 0)
        found.append(
            Attachment(
                name=str(media.get("fileName") or f"{label}.{extension}"),
                mime_type=mime or "application/octet-stream",
                size=int(where.get("size") or size) or None,
                url=where.get("url") if isinstance(where.get("url"), str) else None,
            )
        )
    return tuple(found)


def _content(
    message: Json, base: dict[str, Any], sender: Sender, remote_id: str, stored: Sequence[Any], txn: Any
) -> list[Event]:
    protocol = message.get("protocolMessage")
    if isinstance(protocol, Mapping):
        target = str(_map(protocol.get("key"), "protocolMessage.key").get("ID") or "")
        kind = protocol.get("type", "REVOKE")  # proto2 default: REVOKE (0) is left out of the dict
        if kind == "REVOKE" and target:
            return [Delete(**base, target_id=target, sender=sender)]
        if kind == "MESSAGE_EDIT" and target:
            edited = unwrap(_map(protocol.get("editedMessage"), "editedMessage"))
            return [Edit(**base, target_id=target, remote_id=remote_id, sender=sender, text=text_of(edited))]
        return []  # key shares, history-sync notices, ephemeral settings: nothing for the store
    reaction = message.get("reactionMessage")
    if isinstance(reaction, Mapping):
        target = str(_map(reaction.get("key"), "reactionMessage.key").get("ID") or "")
        emoji = str(reaction.get("text") or "")
        action = ReactionAction.ADD if emoji else ReactionAction.REMOVE
        return (
            [Reaction(**base, target_id=target, sender=sender, emoji=emoji, action=action)] if target else []
        )
    text, attachments = text_of(message), attachments_of(message, stored)
    if not text and not attachments:
        kinds = [k for k in message if k != "messageContextInfo"]
        if not kinds or kinds == ["senderKeyDistributionMessage"]:
            return []  # key distribution only: no content
        text = f"[WhatsApp {kinds[0]} not shown by the bridge]"
    context = context_of(message)
    mentions = tuple(Mention(user_id=jid_text(j)) for j in context.get("mentionedJID") or () if jid_text(j))
    return [
        Message(
            **base,
            remote_id=remote_id,
            sender=sender,
            text=text,
            attachments=attachments,
            reply_to=str(context["stanzaID"]) if context.get("stanzaID") else None,
            mentions=mentions,
            txn_id=str(txn) if isinstance(txn, str) and txn else None,
        )
    ]


def _live_message(payload: Json, account: Account) -> list[Event]:
    event = _map(payload.get("event"), "event")
    info = _map(event.get("Info"), "Info")
    source = _map(info.get("MessageSource"), "MessageSource")
    chat, remote_id = jid_text(source.get("Chat")), str(info.get("ID") or "")
    if not chat or not remote_id:
        raise MalformedPayload("WhatsApp message without a chat or an id")
    sender = Sender(
        user_id=jid_text(source.get("Sender")) or chat,
        display_name=str(info.get("Pushname") or "") or None,
        is_self=bool(source.get("IsFromMe")),
    )
    base = {
        "network": NETWORK,
        "account_id": account.id,
        "conversation_id": chat,
        "timestamp": _time(info.get("Timestamp")),
    }
    content = unwrap(_map(event.get("Message") or {}, "Message"))
    media = payload.get("media") or []
    return _content(
        content, base, sender, remote_id, media if isinstance(media, list) else [], payload.get("txn_id")
    )


def _history_message(payload: Json, account: Account) -> list[Event]:
    event = _map(payload.get("event"), "event")
    web = _map(event.get("message"), "message")
    key = _map(web.get("key"), "key")
    chat = jid_text(event.get("chat") or key.get("remoteJID"))
    remote_id = str(key.get("ID") or "")
    if not chat or not remote_id:
        raise MalformedPayload("WhatsApp history message without a chat or an id")
    from_me = bool(key.get("fromMe"))
    author = jid_text(web.get("participant") or key.get("participant")) or (
        jid_text(payload.get("self")) if from_me else chat
    )
    sender = Sender(
        user_id=author or chat, display_name=str(web.get("pushName") or "") or None, is_self=from_me
    )
    base = {
        "network": NETWORK,
        "account_id": account.id,
        "conversation_id": chat,
        "timestamp": _time(web.get("messageTimestamp")),
    }
    return _content(unwrap(_map(web.get("message") or {}, "message")), base, sender, remote_id, [], None)


def _receipt(payload: Json, account: Account) -> list[Event]:
    event = _map(payload.get("event"), "event")
    source = _map(event.get("MessageSource"), "MessageSource")
    ids = [str(i) for i in event.get("MessageIDs") or () if i]
    if event.get("Type") not in READ_TYPES or not ids:
        return []  # delivered, played, server errors: not read markers
    chat = jid_text(source.get("Chat"))
    reader = Sender(user_id=jid_text(source.get("Sender")) or chat, is_self=bool(source.get("IsFromMe")))
    return [
        ReadReceipt(
            network=NETWORK,
            account_id=account.id,
            conversation_id=chat,
            timestamp=_time(event.get("Timestamp")),
            up_to_id=ids[-1],
            reader=reader,
        )
    ]


def _presence(payload: Json, account: Account) -> list[Event]:
    event = _map(payload.get("event"), "event")
    source = _map(event.get("MessageSource"), "MessageSource")
    chat = jid_text(source.get("Chat"))
    user = Sender(user_id=jid_text(source.get("Sender")) or chat, is_self=bool(source.get("IsFromMe")))
    active = event.get("State") in ("COMPOSING", None)  # proto2 default COMPOSING (1) may be printed
    return [Typing(network=NETWORK, account_id=account.id, conversation_id=chat, user=user, active=active)]


def _group(payload: Json, account: Account) -> list[Event]:
    event = _map(payload.get("event"), "event")
    chat = jid_text(event.get("JID"))
    base = {
        "network": NETWORK,
        "account_id": account.id,
        "conversation_id": chat,
        "timestamp": _time(event.get("Timestamp")),
    }
    actor_id = jid_text(event.get("Sender"))
    actor = Sender(user_id=actor_id) if actor_id else None
    changes: list[Event] = []
    for field, action in (("Join", MembershipAction.JOIN), ("Leave", MembershipAction.LEAVE)):
        for jid in event.get(field) or ():
            user = jid_text(jid)
            if user:
                changes.append(
                    MembershipChange(**base, user=Sender(user_id=user), action=action, actor=actor)
                )
    name = event.get("Name")
    if isinstance(name, Mapping) and name.get("Name"):
        who = Sender(user_id=actor_id or jid_text(name.get("NameSetBy")) or chat)
        changes.append(
            MembershipChange(
                **base, user=who, action=MembershipAction.RENAME, new_name=str(name["Name"]), actor=actor
            )
        )
    return changes


KINDS = {
    "message": _live_message,
    "history": _history_message,
    "receipt": _receipt,
    "presence": _presence,
    "group": _group,
}


def convert(payload: Any, account: Account) -> list[Event]:
    if not isinstance(payload, Mapping) or payload.get("v") != PAYLOAD_VERSION:
        raise MalformedPayload("not a WhatsApp payload of this connector's version")
    kind = payload.get("kind")
    handler = KINDS.get(kind) if isinstance(kind, str) else None
    if handler is None:
        raise MalformedPayload(f"unknown WhatsApp payload kind {payload.get('kind')!r}")
    try:
        return handler(payload, account)
    except MalformedPayload:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError, ValidationError) as exc:
        raise MalformedPayload(
            f"WhatsApp {payload.get('kind')} payload: {type(exc).__name__}: {exc}"
        ) from None
