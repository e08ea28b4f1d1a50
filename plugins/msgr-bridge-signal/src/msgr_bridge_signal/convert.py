"""Pure conversion of what signal-cli-rest-api delivers (``{"envelope": ..., "account": ...}``, as the
connector pushed it) into canonical events.

Identifiers:

* a person is their phone number when signal-cli knows it, else their ACI (uuid);
* a 1:1 conversation is the other person's id; a group is ``group.<base64 of the internal id>``, the id the
  REST API itself uses (``/v2/send`` recipients, ``/v1/groups``);
* a message is ``<timestamp>:<author>``: Signal names a message by its author and sent timestamp (what
  reactions, quotes, edits and deletes point at), so both go into the id.

The connector adds ``txn_id`` (a sync message that is the echo of our own send) and ``media`` (attachment
id -> the share-link URL and size the core stored it under) and ``receipt_groups`` (timestamp of a group
message we sent -> its group) before it pushes. Delivery, read and viewed receipts of our messages become
``MessageReceipt`` events; the phone's "read" sync (``syncMessage.readMessages``, which does not name the
conversation) converts to nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Attachment,
    Delete,
    Edit,
    Event,
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

NETWORK = "signal"
PAYLOAD_VERSION = 1
RECEIPTS_MAX = 100
"""The most messages one receipt is converted for (Signal batches a few; more in one is dropped)."""


def message_id(timestamp: int, author: str) -> str:
    return f"{timestamp}:{author}"


def parse_message_id(remote_id: str) -> tuple[int, str]:
    """``(timestamp, author)`` of a message id; ``ValueError`` when it is not one."""
    stamp, sep, author = remote_id.partition(":")
    if not sep or not author or not stamp.isdigit():
        raise ValueError(f"{remote_id!r} is not a Signal message id (<timestamp>:<author>)")
    return int(stamp), author


def group_conversation(internal_id: str) -> str:
    return "group." + base64.b64encode(internal_id.encode()).decode()


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"Signal payload: {where} is not an object")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**15:
        raise MalformedPayload(f"Signal payload: {where} is not a timestamp")
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _who(obj: Mapping[str, Any], prefix: str) -> str | None:
    """A person's id from signal-cli's ``<prefix>Number``/``<prefix>Uuid``/``<prefix>`` fields."""
    found = [_str(obj.get(prefix + "Number")), _str(obj.get(prefix + "Uuid")), _str(obj.get(prefix))]
    return next((f for f in found if f is not None), None)


def _author(obj: Mapping[str, Any], prefix: str, where: str) -> str:
    found = _who(obj, prefix)
    if found is None:
        raise MalformedPayload(f"Signal payload: {where} names no author")
    return found


def _mentioned(mention: Mapping[str, Any]) -> str:
    found = _str(mention.get("number")) or _str(mention.get("uuid"))
    if found is None:
        raise MalformedPayload("Signal payload: a mention names nobody")
    return found


class _Envelope:
    def __init__(self, payload: Mapping[str, Any], account: Account) -> None:
        self.payload, self.account = payload, account
        self.env = _obj(payload.get("envelope"), "envelope")
        self.ts = _int(self.env.get("timestamp"), "envelope.timestamp")
        source = _who(self.env, "source")
        if source is None:
            raise MalformedPayload("Signal payload: the envelope names no sender")
        self.source = source
        self.when = datetime.fromtimestamp(self.ts / 1000, UTC)
        self.me = account.remote_user_id
        name = _str(self.env.get("sourceName"))
        self.sender = Sender(user_id=source, display_name=name, is_self=source == self.me)
        self.base: dict[str, Any] = {"network": NETWORK, "account_id": account.id, "timestamp": self.when}

    def conversation(self, data: Mapping[str, Any], other: str) -> str:
        group = data.get("groupInfo")
        if group is not None:
            internal = _str(_obj(group, "groupInfo").get("groupId"))
            if internal is None:
                raise MalformedPayload("Signal payload: groupInfo without groupId")
            return group_conversation(internal)
        return other

    def attachments(self, data: Mapping[str, Any]) -> tuple[Attachment, ...]:
        media = self.payload.get("media")
        stored = media if isinstance(media, Mapping) else {}
        out = []
        for item in data.get("attachments") or ():
            info = _obj(item, "attachment")
            attachment_id = _str(info.get("id"))
            saved = stored.get(attachment_id) if attachment_id else None
            size = info.get("size")
            out.append(
                Attachment(
                    name=_str(info.get("filename")) or attachment_id or "attachment",
                    mime_type=_str(info.get("contentType")) or "application/octet-stream",
                    size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                    url=_str(saved.get("url")) if isinstance(saved, Mapping) else None,
                    remote_id=attachment_id,
                )
            )
        return tuple(out)

    def data(
        self, data: Mapping[str, Any], conversation: str, sender: Sender, txn_id: str | None
    ) -> list[Event]:
        base = {**self.base, "conversation_id": conversation}
        ts = _int(data.get("timestamp", self.ts), "dataMessage.timestamp")
        if data.get("reaction") is not None:
            reaction = _obj(data["reaction"], "reaction")
            stamp = _int(reaction.get("targetSentTimestamp"), "reaction.targetSentTimestamp")
            target = message_id(stamp, _author(reaction, "targetAuthor", "reaction"))
            emoji = _str(reaction.get("emoji"))
            if emoji is None:
                raise MalformedPayload("Signal payload: a reaction without an emoji")
            action = ReactionAction.REMOVE if reaction.get("isRemove") is True else ReactionAction.ADD
            return [Reaction(**base, target_id=target, sender=sender, emoji=emoji, action=action)]
        if data.get("remoteDelete") is not None:
            deleted = _obj(data["remoteDelete"], "remoteDelete")
            target = message_id(_int(deleted.get("timestamp"), "remoteDelete.timestamp"), sender.user_id)
            return [Delete(**base, target_id=target, sender=sender)]
        text = data.get("message")
        text = text if isinstance(text, str) else ""
        attachments = self.attachments(data)
        if not text and not attachments:
            return []  # group updates, expiry timers, stickers, payments, polls: nothing to show
        reply_to = None
        if data.get("quote") is not None:
            quote = _obj(data["quote"], "quote")
            reply_to = message_id(_int(quote.get("id"), "quote.id"), _author(quote, "author", "quote"))
        mentions = tuple(
            Mention(user_id=_mentioned(m), offset=m.get("start"), length=m.get("length"))
            for m in (_obj(x, "mention") for x in data.get("mentions") or ())
        )
        return [
            Message(
                **base,
                remote_id=message_id(ts, sender.user_id),
                sender=sender,
                text=text,
                attachments=attachments,
                reply_to=reply_to,
                mentions=mentions,
                txn_id=txn_id,
            )
        ]

    def edit(self, edit: Mapping[str, Any], conversation_of: Any, sender: Sender) -> list[Event]:
        data = _obj(edit.get("dataMessage"), "editMessage.dataMessage")
        target = _int(edit.get("targetSentTimestamp"), "editMessage.targetSentTimestamp")
        ts = _int(data.get("timestamp", self.ts), "editMessage.dataMessage.timestamp")
        text = data.get("message")
        return [
            Edit(
                **self.base,
                conversation_id=conversation_of(data),
                target_id=message_id(target, sender.user_id),
                remote_id=message_id(ts, sender.user_id),
                sender=sender,
                text=text if isinstance(text, str) else "",
            )
        ]


def convert(payload: Mapping[str, Any], account: Account) -> Sequence[Event]:
    try:
        return _convert(_obj(payload, "payload"), account)
    except MalformedPayload:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
        raise MalformedPayload(f"Signal payload: {type(exc).__name__}: {exc}") from exc


def _receipts(e: _Envelope, receipt: Mapping[str, Any], groups: Any) -> list[Event]:
    """A delivery, read or viewed receipt names our messages by their timestamps: one ``MessageReceipt``
    each, in the 1:1 conversation with the sender, or in the group the connector noted we sent it to
    (``receipt_groups``: Signal's receipt does not name the group). A read one also moves the sender's
    read marker in the 1:1 conversation."""
    read = receipt.get("isRead") is True or receipt.get("isViewed") is True
    if not read and receipt.get("isDelivery") is not True:
        return []
    stamps = [
        _int(t, "receiptMessage.timestamps[]") for t in (receipt.get("timestamps") or ())[:RECEIPTS_MAX]
    ]
    known = groups if isinstance(groups, Mapping) else {}
    state = ReceiptState.READ if read else ReceiptState.DELIVERED
    events: list[Event] = []
    for stamp in stamps:
        where = known.get(str(stamp))
        events.append(
            MessageReceipt(
                **e.base,
                conversation_id=where if isinstance(where, str) else e.source,
                target_id=message_id(stamp, e.me),
                recipient=e.sender,
                state=state,
            )
        )
    ones = [t for t in stamps if not isinstance(known.get(str(t)), str)]
    if read and ones:
        up_to = message_id(max(ones), e.me)
        events.append(ReadReceipt(**e.base, conversation_id=e.source, up_to_id=up_to, reader=e.sender))
    return events


def _convert(payload: Mapping[str, Any], account: Account) -> list[Event]:
    e = _Envelope(payload, account)
    env = e.env
    if env.get("syncMessage") is not None:
        sync = _obj(env["syncMessage"], "syncMessage")
        if sync.get("sentMessage") is None:
            return []  # read markers, blocked lists, contacts sync: nothing the person sees
        sent = _obj(sync["sentMessage"], "syncMessage.sentMessage")
        me = Sender(user_id=e.me, is_self=True)
        other = _who(sent, "destination")

        def conversation(data: Mapping[str, Any]) -> str:
            found = e.conversation(data, other or "")
            if not found:
                raise MalformedPayload("Signal payload: a sync message without destination or group")
            return found

        if sent.get("editMessage") is not None:
            return e.edit(_obj(sent["editMessage"], "sentMessage.editMessage"), conversation, me)
        txn = payload.get("txn_id")
        return e.data(sent, conversation(sent), me, txn if isinstance(txn, str) else None)
    if env.get("dataMessage") is not None:
        data = _obj(env["dataMessage"], "dataMessage")
        return e.data(data, e.conversation(data, e.source), e.sender, None)
    if env.get("editMessage") is not None:
        return e.edit(
            _obj(env["editMessage"], "editMessage"), lambda d: e.conversation(d, e.source), e.sender
        )
    if env.get("receiptMessage") is not None:
        return _receipts(e, _obj(env["receiptMessage"], "receiptMessage"), payload.get("receipt_groups"))
    if env.get("typingMessage") is not None:
        typing = _obj(env["typingMessage"], "typingMessage")
        group = _str(typing.get("groupId"))
        where = group_conversation(group) if group else e.source
        active = typing.get("action") == "STARTED"
        return [Typing(**e.base, conversation_id=where, user=e.sender, active=active)]
    return []  # calls, stories, errors
