"""Pure conversion of the connector's raw payloads into canonical events.

A payload is what ``connector.py`` pushes: a neonize event protobuf turned into a JSON-compatible dict with
``google.protobuf.json_format.MessageToDict`` (proto field names kept, bytes as base64, 64-bit numbers as
strings), wrapped as ``{"v": 1, "kind": ..., "self": <our jid>, "event": {...}}``. Kinds: ``message`` (a
neonize ``Message`` event: text, extended text, media with ``media`` naming where each file was stored,
replies, edits, revokes, reactions with the one they replace as ``previous_reaction``), ``history`` (one
``WebMessageInfo`` of a history sync, with its ``chat``), ``receipt`` (``Receipt``), ``presence``
(``ChatPresence``: typing) and ``group`` (``GroupInfoEvent``: joins, leaves, renames). Anything malformed
raises ``MalformedPayload``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Delete,
    Edit,
    Event,
    MembershipAction,
    MembershipChange,
    Mention,
    Message,
    MessageReceipt,
    Reaction,
    ReactionAction,
    ReadReceipt,
    ReceiptState,
    Sender,
    Typing,
)

from .content import Json, as_map, attachments_of, context_of, jid_text, text_of, time_of, unwrap

NETWORK = "whatsapp"
PAYLOAD_VERSION = 1
READ_TYPES = {"READ", "READ_SELF", "PLAYED"}
OUR_RECEIPTS = {"DELIVERED": ReceiptState.DELIVERED, "READ": ReceiptState.READ, "PLAYED": ReceiptState.READ}
"""Receipts someone else sends about our messages, as ``MessageReceipt`` states."""
RECEIPTS_MAX = 100
"""The most message ids one receipt is converted for."""


def _reaction(base: dict[str, Any], sender: Sender, target: str, emoji: str, previous: Any) -> list[Event]:
    """WhatsApp keeps one reaction per person and message: a new one replaces theirs, an empty one removes
    it. ``previous`` (added by the connector, which saw the earlier one) says what is replaced or removed."""
    events: list[Event] = []
    if isinstance(previous, str) and previous and previous != emoji:
        remove = ReactionAction.REMOVE
        events.append(Reaction(**base, target_id=target, sender=sender, emoji=previous, action=remove))
    if emoji and emoji != previous:
        events.append(
            Reaction(**base, target_id=target, sender=sender, emoji=emoji, action=ReactionAction.ADD)
        )
    return events


def _content(
    message: Json,
    base: dict[str, Any],
    sender: Sender,
    remote_id: str,
    stored: Sequence[Any],
    txn: Any,
    previous: Any = None,
) -> list[Event]:
    protocol = message.get("protocolMessage")
    if isinstance(protocol, Mapping):
        target = str(as_map(protocol.get("key"), "protocolMessage.key").get("ID") or "")
        kind = protocol.get("type", "REVOKE")  # proto2 default: REVOKE (0) is left out of the dict
        if kind == "REVOKE" and target:
            return [Delete(**base, target_id=target, sender=sender)]
        if kind == "MESSAGE_EDIT" and target:
            edited = unwrap(as_map(protocol.get("editedMessage"), "editedMessage"))
            return [Edit(**base, target_id=target, remote_id=remote_id, sender=sender, text=text_of(edited))]
        return []  # key shares, history-sync notices, ephemeral settings: nothing for the store
    reaction = message.get("reactionMessage")
    if isinstance(reaction, Mapping):
        target = str(as_map(reaction.get("key"), "reactionMessage.key").get("ID") or "")
        return _reaction(base, sender, target, str(reaction.get("text") or ""), previous) if target else []
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
    event = as_map(payload.get("event"), "event")
    info = as_map(event.get("Info"), "Info")
    source = as_map(info.get("MessageSource"), "MessageSource")
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
        "timestamp": time_of(info.get("Timestamp")),
    }
    content = unwrap(as_map(event.get("Message") or {}, "Message"))
    media = payload.get("media") or []
    return _content(
        content,
        base,
        sender,
        remote_id,
        media if isinstance(media, list) else [],
        payload.get("txn_id"),
        payload.get("previous_reaction"),
    )


def _history_message(payload: Json, account: Account) -> list[Event]:
    event = as_map(payload.get("event"), "event")
    web = as_map(event.get("message"), "message")
    key = as_map(web.get("key"), "key")
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
        "timestamp": time_of(web.get("messageTimestamp")),
    }
    return _content(unwrap(as_map(web.get("message") or {}, "message")), base, sender, remote_id, [], None)


def _receipt(payload: Json, account: Account) -> list[Event]:
    """A receipt from someone else is about our messages: a ``MessageReceipt`` for each id (delivered, or
    read/played); a read one also moves the reader's read marker, as does our own reading elsewhere."""
    event = as_map(payload.get("event"), "event")
    source = as_map(event.get("MessageSource"), "MessageSource")
    ids = [str(i) for i in event.get("MessageIDs") or () if i][:RECEIPTS_MAX]
    kind = event.get("Type")
    if not ids:
        return []
    chat = jid_text(source.get("Chat"))
    from_me = bool(source.get("IsFromMe"))
    reader = Sender(user_id=jid_text(source.get("Sender")) or chat, is_self=from_me)
    base = {"network": NETWORK, "account_id": account.id, "conversation_id": chat}
    base["timestamp"] = time_of(event.get("Timestamp"))
    events: list[Event] = []
    if not from_me and kind in OUR_RECEIPTS:
        state = OUR_RECEIPTS[kind]
        events.extend(MessageReceipt(**base, target_id=i, recipient=reader, state=state) for i in ids)
    if kind in READ_TYPES:
        events.append(ReadReceipt(**base, up_to_id=ids[-1], reader=reader))
    return events  # sender, retry, server errors: nothing to show


def _presence(payload: Json, account: Account) -> list[Event]:
    event = as_map(payload.get("event"), "event")
    source = as_map(event.get("MessageSource"), "MessageSource")
    chat = jid_text(source.get("Chat"))
    user = Sender(user_id=jid_text(source.get("Sender")) or chat, is_self=bool(source.get("IsFromMe")))
    active = event.get("State") in ("COMPOSING", None)  # proto2 default COMPOSING (1) may be printed
    return [Typing(network=NETWORK, account_id=account.id, conversation_id=chat, user=user, active=active)]


def _group(payload: Json, account: Account) -> list[Event]:
    event = as_map(payload.get("event"), "event")
    chat = jid_text(event.get("JID"))
    base = {
        "network": NETWORK,
        "account_id": account.id,
        "conversation_id": chat,
        "timestamp": time_of(event.get("Timestamp")),
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
