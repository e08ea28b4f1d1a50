"""Builders shared by the store tests (imported as ``store_helpers``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from msgr_bridge.schema import Message, Sender

NETWORK = "loop"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def message(
    remote_id: str, *, account: str = "acct-a", conversation: str = "room-1", **kw: object
) -> Message:
    fields: dict[str, object] = {
        "network": NETWORK,
        "account_id": account,
        "conversation_id": conversation,
        "remote_id": remote_id,
        "sender": Sender(user_id="alice", display_name="Alice"),
        "text": f"text of {remote_id}",
        "timestamp": T0,
    }
    fields.update(kw)
    return Message.model_validate(fields)
