"""Building what ``/v2/send`` takes: the recipient of a conversation, quotes, and attachments as the REST
API wants them (``data:<mime>;filename=<name>;base64,<data>`` strings inside the JSON body).

Attachments come from ``ctx.media`` (share-link storage or an allowed remote URL), chunk by chunk, capped at
``max_attachment_bytes``; each is encoded as it is read. The REST API takes the whole file inside one JSON
request, so a file is in memory (as base64) while it is sent: the cap bounds that.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from msgr_bridge.connectors.protocol import MediaAccess
from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import OutboundMessage

from .convert import parse_message_id
from .styles import text_fields

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NUMBER = re.compile(r"^\+[1-9][0-9]{6,14}$")


def recipient(conversation_id: str) -> str:
    """The ``recipient`` of a conversation id: a number, an ACI, or a ``group.`` id."""
    if NUMBER.match(conversation_id) or UUID.match(conversation_id) or conversation_id.startswith("group."):
        return conversation_id
    raise PermanentError(
        f"{conversation_id!r} is not a Signal conversation",
        hint="Signal conversation ids are a phone number (+...), an ACI (uuid) or a group id (group....)",
    )


def target(remote_id: str) -> tuple[int, str]:
    try:
        return parse_message_id(remote_id)
    except ValueError as exc:
        raise PermanentError(str(exc), hint="use the id the bridge stored for the message") from None


def _safe_name(name: str) -> str:
    return re.sub(r"[;,\s]", "_", name)[:200] or "attachment"


async def encode_attachments(message: OutboundMessage, media: MediaAccess, max_bytes: int) -> list[str]:
    encoded = []
    for attachment in message.attachments:
        async with media.open(attachment, max_bytes=max_bytes) as stream:
            parts: list[str] = []
            carry = b""
            async for chunk in stream.chunks:
                data = carry + chunk
                cut = len(data) - len(data) % 3
                parts.append(base64.b64encode(data[:cut]).decode("ascii"))
                carry = data[cut:]
            parts.append(base64.b64encode(carry).decode("ascii"))
            header = f"data:{stream.mime_type};filename={_safe_name(stream.name)};base64,"
            encoded.append(header + "".join(parts))
    return encoded


async def send_body(
    conversation_id: str, message: OutboundMessage, media: MediaAccess, max_bytes: int
) -> dict[str, Any]:
    body: dict[str, Any] = {"recipients": [recipient(conversation_id)], **text_fields(message)}
    if message.reply_to:
        stamp, author = target(message.reply_to)
        body.update(quote_timestamp=stamp, quote_author=author)
    if message.attachments:
        body["base64_attachments"] = await encode_attachments(message, media, max_bytes)
    return body
