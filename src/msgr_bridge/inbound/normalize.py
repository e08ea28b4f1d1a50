"""Normalize: a connector's pure ``convert`` turns a raw payload into canonical events.

A payload that fails conversion is not an error of the bridge: it becomes a ``Quarantined`` record (error
text plus the payload with secret-looking values redacted), is counted, and the pipeline goes on.

Our own account speaks under one identity: an event whose sender is the account itself (``is_self``) is
stored under the account's ``remote_user_id``, whatever the network called it (an XMPP room's occupant JID
``room@service/nick``, an IRC nick with ``_`` appended while the nick was taken). So the bridge's record of
a send, its echo, and what another client of the same account sent all carry one sender, which history
reads back as ``is_self`` (``MessageRepo.history``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ..connectors.protocol import RawPayload
from ..schema import Account, Event, Sender
from .sink import RawInbound

log = structlog.get_logger("msgr_bridge.inbound")

Converter = Callable[[RawPayload, Account], Sequence[Event]]

SECRET_KEY_HINTS = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "cookie",
    "authorization",
    "session",
    "private_key",
    "access_key",
    "signature",
)
MAX_QUARANTINE_BYTES = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A payload (or held event) set aside with the reason; ``payload`` is already redacted."""

    network: str
    account_id: str | None
    error: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, item: RawInbound, error: str) -> Quarantined:
        return cls(item.account.network, item.account.id, error, quarantine_payload(item.payload))


def storable_text(text: str) -> str:
    """``text`` with what a database refuses escaped: NUL (PostgreSQL) and lone surrogates (UTF-8)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def redact_payload(value: Any, *, _depth: int = 0) -> Any:
    """A JSON-safe, storable copy of ``value`` with secret-looking keys masked (and absurd nesting cut);
    strings are ``storable_text``."""
    if _depth > 20:
        return "<nested too deep>"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = storable_text(str(k))
            if any(h in key.lower() for h in SECRET_KEY_HINTS):
                out[key] = "[redacted]"
            else:
                out[key] = redact_payload(v, _depth=_depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [redact_payload(v, _depth=_depth + 1) for v in value]
    if isinstance(value, str):
        return storable_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return storable_text(repr(value))


def quarantine_payload(payload: Any) -> dict[str, Any]:
    redacted = redact_payload(payload)
    if not isinstance(redacted, dict):
        redacted = {"value": redacted}
    text = json.dumps(redacted, default=str)
    if len(text) > MAX_QUARANTINE_BYTES:
        return {"truncated": True, "prefix": text[:MAX_QUARANTINE_BYTES]}
    return redacted


def normalize(item: RawInbound, convert: Converter | None) -> Sequence[Event] | Quarantined:
    """Canonical events for ``item``, or the quarantine record saying why there are none."""
    if convert is None:
        return Quarantined.of(item, f"no connector for network {item.account.network!r}")
    try:
        events = convert(item.payload, item.account)
    except Exception as exc:  # anything a converter raises quarantines that payload, nothing else
        return Quarantined.of(item, f"{type(exc).__name__}: {exc}")
    for event in events:
        if event.account_id != item.account.id or event.network != item.account.network:
            return Quarantined.of(
                item,
                f"converter produced an event for {event.network}/{event.account_id}, "
                f"expected {item.account.network}/{item.account.id}",
            )
    return [storable_content(own_identity(event, item.account)) for event in events]


def storable_content(event: Event) -> Event:
    """``event`` with lone surrogates in its text replaced by U+FFFD: no database can store them, and the
    text is still worth keeping. Whatever else the database refuses is quarantined when persisting."""
    text: str | None = getattr(event, "text", None)
    if not text or _SURROGATE.search(text) is None:
        return event
    return event.model_copy(update={"text": _SURROGATE.sub("\ufffd", text)})


def own_identity(event: Event, account: Account) -> Event:
    """``event`` with our own account's sender under the account's ``remote_user_id`` (see above)."""
    sender: Sender | None = getattr(event, "sender", None)
    if sender is None or not sender.is_self or sender.user_id == account.remote_user_id:
        return event
    me = Sender(user_id=account.remote_user_id, display_name=sender.display_name, is_self=True)
    return event.model_copy(update={"sender": me})
