"""Pure builders of outbound Matrix event contents (the inverse of ``convert``). Attachment bytes come
from the core (``ctx.media``), never from here."""

from __future__ import annotations

from typing import Any

from msgr_bridge.schema import Attachment, OutboundMessage, TextFormat

from .convert import HTML_FORMAT


def text_content(message: OutboundMessage) -> dict[str, Any]:
    """``m.text`` content with an HTML ``formatted_body`` when the message has one."""
    content: dict[str, Any] = {"msgtype": "m.text", "body": message.text}
    if message.format == TextFormat.HTML and message.formatted:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = message.formatted
    if message.mentions:
        content["m.mentions"] = {"user_ids": [m.user_id for m in message.mentions]}
    return content


def add_relations(content: dict[str, Any], message: OutboundMessage) -> dict[str, Any]:
    """Reply (``m.in_reply_to``) and thread (``m.thread``) relations of an outbound message."""
    if message.thread_id:
        rel: dict[str, Any] = {"rel_type": "m.thread", "event_id": message.thread_id}
        rel["m.in_reply_to"] = {"event_id": message.reply_to or message.thread_id}
        rel["is_falling_back"] = message.reply_to is None
        content["m.relates_to"] = rel
    elif message.reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": message.reply_to}}
    return content


def edit_content(target_id: str, message: OutboundMessage) -> dict[str, Any]:
    """An ``m.replace`` edit: a fallback body for old clients plus ``m.new_content``."""
    new = text_content(message)
    content: dict[str, Any] = {
        "msgtype": "m.text",
        "body": f"* {message.text}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target_id},
    }
    if "formatted_body" in new:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = f"* {new['formatted_body']}"
    return content


def media_msgtype(mime_type: str) -> str:
    major = mime_type.split("/", 1)[0]
    return {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(major, "m.file")


def media_content(attachment: Attachment, mxc: str, size: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {"mimetype": attachment.mime_type}
    if size is not None:
        info["size"] = size
    return {
        "msgtype": media_msgtype(attachment.mime_type),
        "body": attachment.name,
        "filename": attachment.name,
        "url": mxc,
        "info": info,
    }
