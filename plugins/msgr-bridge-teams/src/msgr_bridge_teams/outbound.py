"""Outbound requests for Graph: the path of a conversation or chat message, and a chatMessage body from a
canonical ``OutboundMessage`` (HTML as given, or plain text escaped; mentions as ``<at id>`` with Graph's
``mentions`` list)."""

from __future__ import annotations

from typing import Any

from msgr_bridge import OutboundMessage, PermanentError
from msgr_bridge.schema import TextFormat

from .convert import text_to_html


def conversation_path(conversation_id: str) -> str:
    if "/" in conversation_id:
        team, _, channel = conversation_id.partition("/")
        if not team or not channel or "/" in channel:
            raise PermanentError(f"{conversation_id!r} is not a Teams channel id ('<team>/<channel>')")
        return f"/teams/{team}/channels/{channel}"
    if not conversation_id.startswith("19:"):
        raise PermanentError(f"{conversation_id!r} is not a Teams chat id", hint="chat ids start with '19:'")
    return f"/chats/{conversation_id}"


def message_body(message: OutboundMessage) -> dict[str, Any]:
    spots, mentions = [], []
    for index, mention in enumerate(message.mentions):
        if mention.offset is None or mention.length is None:
            continue
        spots.append((index, mention.offset, mention.length))
        mentions.append(
            {
                "id": index,
                "mentionText": mention.display or mention.user_id,
                "mentioned": {
                    "user": {
                        "id": mention.user_id,
                        "displayName": mention.display,
                        "userIdentityType": "aadUser",
                    }
                },
            }
        )
    if message.format == TextFormat.HTML and message.formatted:
        content = message.formatted
    else:
        content = text_to_html(message.text, spots)
    body: dict[str, Any] = {"body": {"contentType": "html", "content": content}}
    if mentions:
        body["mentions"] = mentions
    return body


def message_path(conversation_id: str, target_id: str) -> str:
    """A chat message, a channel's root message, or a channel reply (``<root id>/<reply id>``)."""
    parts = target_id.split("/")
    if not all(p.isdigit() for p in parts) or len(parts) > (2 if "/" in conversation_id else 1):
        raise PermanentError(f"{target_id!r} is not a Teams message id")
    base = f"{conversation_path(conversation_id)}/messages/{parts[0]}"
    return f"{base}/replies/{parts[1]}" if len(parts) == 2 else base
