"""The reading side of ``convert``: typed access to a payload's JSON that raises ``Bad`` (turned into
``MalformedPayload``) instead of ``KeyError``/``TypeError``, peers, dates, and senders."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from msgr_bridge import Account
from msgr_bridge.schema import Sender

NETWORK = "telegram"
PEER_PREFIX = {
    "PeerUser": ("user", "user_id"),
    "PeerChat": ("chat", "chat_id"),
    "PeerChannel": ("channel", "channel_id"),
}
NEW = ("UpdateNewMessage", "UpdateNewChannelMessage")
EDITED = ("UpdateEditMessage", "UpdateEditChannelMessage")


class _Bad(Exception):
    pass


def _get(obj: Any, key: str, kind: type) -> Any:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{key!r} is missing or not a {kind.__name__}")
    return value


def _opt(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else None


def _peer(peer: Any) -> tuple[str, int]:
    prefix, key = PEER_PREFIX.get(_get(peer, "_", str), (None, None))
    if prefix is None or key is None:
        raise _Bad(f"unknown peer {peer!r}")
    return prefix, _get(peer, key, int)


def _when(value: Any) -> datetime:
    if not isinstance(value, str):
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"bad date {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Ctx:
    def __init__(self, payload: Mapping[str, Any], account: Account) -> None:
        self.account, self.payload = account, payload
        self.self_id: int = _get(payload, "self_id", int)
        names = payload.get("names")
        self.names: Mapping[str, Any] = names if isinstance(names, Mapping) else {}

    def sender(self, user_id: int) -> Sender:
        name = self.names.get(str(user_id))
        return Sender(
            user_id=str(user_id),
            display_name=name if isinstance(name, str) else None,
            is_self=user_id == self.self_id,
        )

    def base(self, conversation: str, when: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "network": NETWORK,
            "account_id": self.account.id,
            "conversation_id": conversation,
        }
        if when is not None:
            out["timestamp"] = when
        return out
