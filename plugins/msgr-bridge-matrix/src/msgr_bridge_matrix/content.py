"""Pure builders of outbound Matrix event contents (the inverse of ``convert``), and attachment loading."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import aiohttp

from msgr_bridge.errors import PermanentError, TransientError
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


async def load_attachment(
    attachment: Attachment, session: aiohttp.ClientSession, max_size: int | None
) -> bytes:
    """The bytes of an outbound attachment from a ``file://`` URL, a local path or an ``http(s)://`` URL."""
    url = attachment.url or ""
    parsed = urlparse(url)
    if parsed.scheme in {"http", "https"}:
        try:
            async with session.get(url) as resp:
                if resp.status >= 400:
                    cls = TransientError if resp.status >= 500 else PermanentError
                    raise cls(f"fetching attachment {attachment.name!r} from {url} gave HTTP {resp.status}")
                data = await resp.read()
        except aiohttp.ClientError as exc:
            raise TransientError(f"fetching attachment {attachment.name!r} failed: {exc!r}") from exc
    elif parsed.scheme in {"file", ""} and (path := unquote(parsed.path)):
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise PermanentError(f"attachment {attachment.name!r}: cannot read {path}: {exc}") from exc
    else:
        raise PermanentError(
            f"attachment {attachment.name!r} has no URL the Matrix connector can read ({url!r})",
            hint="give attachments an mxc://, file:// or http(s):// url",
        )
    if max_size is not None and len(data) > max_size:
        raise PermanentError(
            f"attachment {attachment.name!r} is {len(data)} bytes; the homeserver accepts at most {max_size}"
        )
    return data
