"""Pure conversion between Graph chatMessages and canonical events (and canonical text to Teams HTML).

A raw payload (version 1) is what the poller pushes for one observed change of one chatMessage::

    {"v": 1, "self_id": "<signed-in user's id>", "conversation": "<chat id>" | "<team id>/<channel id>",
     "change": "message" | "edit" | "delete" | "reactions", "message": {…chatMessage as Graph sent it…},
     "txn_id": "<ours, when it is the echo of our send>",
     "reactions_added": [[user id, reactionType], …], "reactions_removed": [[user id, reactionType], …]}

Channel replies get the remote id ``<root id>/<reply id>`` and the root as ``thread_id`` (a reply is
addressed through its root in Graph). Quote replies in chats are ``messageReference`` attachments: their id
becomes ``reply_to``. ``<at id="n">`` elements become mentions of ``mentions[n]``. Files are ``reference``
attachments (links into SharePoint/OneDrive), kept as references, not downloaded.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Attachment,
    Delete,
    Edit,
    Event,
    Mention,
    Message,
    Reaction,
    ReactionAction,
    Sender,
    TextFormat,
)

NETWORK = "teams"
PAYLOAD_VERSION = 1
LEGACY_REACTIONS = {"like": "👍", "heart": "❤️", "laugh": "😆", "surprised": "😮", "sad": "😢", "angry": "😠"}
"""Graph's older reaction names, as the emoji Teams shows for them."""
BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "pre"}


class _Text(HTMLParser):
    """Teams HTML to plain text, recording where each ``<at id>`` mention lands."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.size = 0
        self.at: list[tuple[str, int]] = []
        self.open_at: tuple[str, int] | None = None
        self.mentions: list[tuple[str, int, int]] = []
        self.skip = 0

    def _add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("attachment", "script", "style"):
            self.skip += 1
        elif tag == "at":
            self.open_at = (dict(attrs).get("id") or "", self.size)
        elif tag in BLOCKS and self.size and not "".join(self.parts).endswith("\n"):
            self._add("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("attachment", "script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag == "at" and self.open_at is not None:
            key, start = self.open_at
            self.mentions.append((key, start, self.size - start))
            self.open_at = None

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self._add(data)


def html_to_text(content: str) -> tuple[str, list[tuple[str, int, int]]]:
    """Plain text of Teams HTML, and (mention id, offset, length) of every ``<at>`` in it."""
    parser = _Text()
    parser.feed(content)
    parser.close()
    text = "".join(parser.parts)
    stripped = text.rstrip()
    lead = len(text) - len(text.lstrip())
    mentions = [(k, max(0, o - lead), n) for k, o, n in parser.mentions]
    return stripped.lstrip(), mentions


def text_to_html(text: str, mentions: Sequence[tuple[int, int, int]] = ()) -> str:
    """Canonical plain text to Teams HTML; ``mentions`` are (at id, offset, length) to wrap in ``<at>``."""
    out, pos = [], 0
    for key, offset, length in sorted(mentions, key=lambda m: m[1]):
        if offset < pos or offset + length > len(text):
            continue
        out.append(html.escape(text[pos:offset]))
        out.append(f'<at id="{key}">{html.escape(text[offset : offset + length])}</at>')
        pos = offset + length
    out.append(html.escape(text[pos:]))
    return "<p>" + "".join(out).replace("\n", "<br>") + "</p>"


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"Teams payload: {what} is not an object")
    return value


def _items(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"Teams payload: {what} is not a list")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"Teams payload: {what} is missing or not a string")
    return value


def _when(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(_str(value, "a timestamp"))
    except ValueError as exc:
        raise MalformedPayload(f"Teams payload: bad timestamp {value!r}") from exc
    if moment.tzinfo is None:
        raise MalformedPayload(f"Teams payload: timestamp without a zone {value!r}")
    return moment


def _sender(msg: dict[str, Any], self_id: str) -> Sender:
    origin = msg.get("from")
    user = origin.get("user") if isinstance(origin, dict) else None
    app = origin.get("application") if isinstance(origin, dict) else None
    who = user if isinstance(user, dict) else app if isinstance(app, dict) else None
    if who is None:
        return Sender(user_id="system", display_name="Microsoft Teams")
    user_id = _str(who.get("id"), "from.user.id")
    name = who.get("displayName")
    return Sender(
        user_id=user_id, display_name=name if isinstance(name, str) else None, is_self=user_id == self_id
    )


def _ids(payload: dict[str, Any], msg: dict[str, Any]) -> tuple[str, str | None]:
    """(remote id, thread id): channel replies are ``<root>/<reply>`` in the root's thread."""
    msg_id = _str(msg.get("id"), "message.id")
    root = msg.get("replyToId")
    if isinstance(root, str) and root and "/" in str(payload.get("conversation")):
        return f"{root}/{msg_id}", root
    return msg_id, None


def _content(msg: dict[str, Any]) -> dict[str, Any]:
    body = _dict(msg.get("body") or {}, "message.body")
    raw = body.get("content") or ""
    if not isinstance(raw, str):
        raise MalformedPayload("Teams payload: message.body.content is not a string")
    is_html = body.get("contentType", "html") == "html"
    text, spots = html_to_text(raw) if is_html else (raw, [])
    by_key: dict[str, dict[str, Any]] = {}
    for item in _items(msg.get("mentions"), "message.mentions"):
        if isinstance(item, dict):
            by_key[str(item.get("id"))] = item
    mentions = []
    for key, offset, length in spots:
        mentioned = (by_key.get(key) or {}).get("mentioned")
        user = mentioned.get("user") if isinstance(mentioned, dict) else None
        if isinstance(user, dict) and isinstance(user.get("id"), str) and user["id"]:
            name = user.get("displayName")
            mentions.append(
                Mention(
                    user_id=user["id"],
                    display=name if isinstance(name, str) else None,
                    offset=offset,
                    length=length,
                )
            )
    attachments, reply_to = [], None
    for item in _items(msg.get("attachments"), "message.attachments"):
        if not isinstance(item, dict):
            continue
        kind = item.get("contentType")
        if kind == "messageReference" and isinstance(item.get("id"), str):
            reply_to = item["id"]
        elif kind == "reference" and isinstance(item.get("contentUrl"), str):
            name = item.get("name")
            attachments.append(
                Attachment(
                    name=name if isinstance(name, str) and name else "file",
                    url=item["contentUrl"],
                    remote_id=str(item.get("id") or "") or None,
                )
            )
    return {
        "text": text,
        "formatted": raw if is_html and raw else None,
        "format": TextFormat.HTML if is_html and raw else TextFormat.PLAIN,
        "mentions": tuple(mentions),
        "attachments": tuple(attachments),
        "reply_to": reply_to,
    }


def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
    if not isinstance(payload, dict) or payload.get("v") != PAYLOAD_VERSION:
        raise MalformedPayload("not a version 1 Teams payload")
    msg = _dict(payload.get("message"), "message")
    conv = _str(payload.get("conversation"), "conversation")
    self_id = _str(payload.get("self_id"), "self_id")
    change = payload.get("change")
    if msg.get("messageType", "message") != "message":
        return []  # system events (member added, chat renamed…) are not messages
    remote_id, thread_id = _ids(payload, msg)
    sender = _sender(msg, self_id)
    base: dict[str, Any] = {"network": NETWORK, "account_id": account.id, "conversation_id": conv}
    if change == "message":
        if msg.get("deletedDateTime"):
            return []
        txn = payload.get("txn_id")
        content = _content(msg)
        return [
            Message(
                **base,
                **content,
                timestamp=_when(msg.get("createdDateTime")),
                remote_id=remote_id,
                sender=sender,
                thread_id=thread_id,
                txn_id=txn if isinstance(txn, str) else None,
            )
        ]
    if change == "edit":
        content = _content(msg)
        when = _when(msg.get("lastEditedDateTime") or msg.get("lastModifiedDateTime"))
        return [
            Edit(
                **base,
                timestamp=when,
                target_id=remote_id,
                sender=sender,
                text=content["text"],
                formatted=content["formatted"],
                format=content["format"],
            )
        ]
    if change == "delete":
        when = _when(msg.get("deletedDateTime") or msg.get("lastModifiedDateTime"))
        return [Delete(**base, timestamp=when, target_id=remote_id, sender=sender)]
    if change == "reactions":
        when = _when(msg.get("lastModifiedDateTime"))
        events: list[Event] = []
        for key, action in (
            ("reactions_added", ReactionAction.ADD),
            ("reactions_removed", ReactionAction.REMOVE),
        ):
            for pair in _items(payload.get(key), key):
                if not (
                    isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x for x in pair)
                ):
                    raise MalformedPayload(f"Teams payload: {key} holds {pair!r}")
                who = Sender(user_id=pair[0], is_self=pair[0] == self_id)
                emoji = LEGACY_REACTIONS.get(pair[1], pair[1])
                events.append(
                    Reaction(
                        **base, timestamp=when, target_id=remote_id, sender=who, emoji=emoji, action=action
                    )
                )
        return events
    raise MalformedPayload(f"Teams payload: unknown change {change!r}")
