"""The capability check of an outbound request: what the network cannot do is refused naming the capability
(``NotSupported``), and what breaks a declared limit (text length, attachment types and sizes, the age
after which edits and deletes are refused) is refused saying which limit (``OutboundRejected``)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..errors import NotSupported, OutboundRejected
from ..schema import Capabilities
from .requests import OutboundRequest


def check_capabilities(
    request: OutboundRequest, caps: Capabilities, network: str, target_age_s: float | None = None
) -> None:
    """Refuse what the network cannot do, naming the capability or the limit."""
    action = request.action
    flag = {
        "send": "send",
        "edit": "edits",
        "delete": "deletes",
        "react": "reactions",
        "mark_read": "read_receipts",
        "typing": "typing",
    }[action]
    hint = "check the network's capabilities (GET /networks) before offering this action"
    if not caps.supports(flag):
        raise NotSupported(flag, network=network, hint=hint)
    if action in ("send", "edit"):
        if request.format.value != "plain" and not caps.formatted_text:
            raise NotSupported("formatted_text", network=network, hint="send plain text instead")
        if caps.max_text_length is not None and len(request.text) > caps.max_text_length:
            raise OutboundRejected(
                f"the text is {len(request.text)} characters; {network} takes at most {caps.max_text_length}",
                hint="shorten the message or split it into several",
            )
    if request.reply_to and not caps.replies:
        raise NotSupported("replies", network=network, hint=hint)
    if request.thread_id and not caps.threads:
        raise NotSupported("threads", network=network, hint=hint)
    if request.attachments and not caps.attachments:
        raise NotSupported("attachments", network=network, hint=hint)
    for att in request.attachments:
        if not any(fnmatchcase(att.mime_type, rule.mime_pattern) for rule in caps.attachments):
            allowed = ", ".join(r.mime_pattern for r in caps.attachments)
            raise OutboundRejected(
                f"attachment {att.name!r} ({att.mime_type}) is not a type {network} accepts ({allowed})",
                hint="convert the file or send it as a share link",
            )
        limits = [r.max_size for r in caps.attachments if fnmatchcase(att.mime_type, r.mime_pattern)]
        largest = None if any(m is None for m in limits) else max(m for m in limits if m is not None)
        if largest is not None and att.size is not None and att.size > largest:
            raise OutboundRejected(
                f"attachment {att.name!r} is {att.size} bytes; {network} takes at most {largest}",
                hint="send a smaller file, or a share link to it",
            )
    max_age = {"edit": caps.edit_max_age_s, "delete": caps.delete_max_age_s}.get(action)
    if max_age is not None and target_age_s is not None and target_age_s > max_age:
        raise OutboundRejected(
            f"the message is {target_age_s:.0f}s old; {network} allows {action}s "
            f"for {max_age}s after sending",
            hint="messages this old can no longer be changed on this network",
        )
