"""Pure conversion of loopback wire payloads into canonical events (no I/O, no state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Delete,
    Edit,
    Event,
    MembershipAction,
    MembershipChange,
    Message,
    Reaction,
    ReactionAction,
    ReadReceipt,
    Sender,
    Typing,
)


def _str(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"loopback payload field {key!r} must be a non-empty string, got {value!r}")
    return value


def convert(payload: Mapping[str, Any], account: Account) -> Sequence[Event]:
    if not isinstance(payload, Mapping):
        raise MalformedPayload(f"loopback payload must be an object, got {type(payload).__name__}")
    kind = payload.get("type")
    ts_raw = payload.get("ts")
    if not isinstance(ts_raw, int | float) or isinstance(ts_raw, bool):
        raise MalformedPayload(f"loopback payload field 'ts' must be a number, got {ts_raw!r}")
    try:
        timestamp = datetime.fromtimestamp(ts_raw, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedPayload(f"loopback payload timestamp {ts_raw!r} is out of range") from exc
    sender_id = _str(payload, "sender")
    sender = Sender(
        user_id=sender_id,
        display_name=payload.get("sender_name") if isinstance(payload.get("sender_name"), str) else None,
        is_self=sender_id == account.remote_user_id,
    )
    base: dict[str, Any] = {
        "network": account.network,
        "account_id": account.id,
        "conversation_id": _str(payload, "conversation"),
        "timestamp": timestamp,
    }
    try:
        match kind:
            case "message":
                return [
                    Message(
                        **base,
                        remote_id=_str(payload, "id"),
                        sender=sender,
                        text=str(payload.get("text", "")),
                        reply_to=payload.get("reply_to"),
                        txn_id=payload.get("txn_id") if sender.is_self else None,
                    )
                ]
            case "edit":
                return [
                    Edit(
                        **base,
                        target_id=_str(payload, "target"),
                        remote_id=payload.get("id"),
                        sender=sender,
                        text=str(payload.get("text", "")),
                        version=payload.get("version"),
                    )
                ]
            case "delete":
                return [Delete(**base, target_id=_str(payload, "target"), sender=sender)]
            case "reaction":
                return [
                    Reaction(
                        **base,
                        target_id=_str(payload, "target"),
                        sender=sender,
                        emoji=_str(payload, "emoji"),
                        action=ReactionAction(payload.get("action", "add")),
                    )
                ]
            case "read":
                return [ReadReceipt(**base, up_to_id=_str(payload, "target"), reader=sender)]
            case "typing":
                return [Typing(**base, user=sender, active=bool(payload.get("active", True)))]
            case "membership":
                return [
                    MembershipChange(**base, user=sender, action=MembershipAction(str(payload.get("action"))))
                ]
            case _:
                raise MalformedPayload(f"unknown loopback payload type {kind!r}")
    except MalformedPayload:
        raise
    except (ValueError, TypeError) as exc:  # pydantic.ValidationError is a ValueError
        raise MalformedPayload(f"invalid loopback {kind} payload: {exc}") from exc
