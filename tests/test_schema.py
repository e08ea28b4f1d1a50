from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from msgr_bridge.schema import (
    SCHEMA_VERSION,
    Capabilities,
    Edit,
    Message,
    Sender,
    json_schemas,
    parse_event,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schema"


def test_exported_json_schema_is_current() -> None:
    """docs/schema/ must match the code: regenerate with `python -m msgr_bridge.schema docs/schema`."""
    expected = json_schemas()
    on_disk = {p.name: p.read_text() for p in DOCS.glob("*.json")}
    stale = sorted(name for name, text in expected.items() if on_disk.get(name) != text)
    extra = sorted(set(on_disk) - set(expected))
    assert not stale and not extra, (
        f"stale: {stale}, unexpected: {extra}; run `python -m msgr_bridge.schema docs/schema`"
    )


def msg(**kw: object) -> Message:
    base: dict[str, object] = {
        "network": "loopback",
        "account_id": "a",
        "conversation_id": "c",
        "remote_id": "m1",
        "sender": Sender(user_id="u"),
        "text": "hi",
    }
    return Message.model_validate(base | kw)


def test_events_are_frozen_and_versioned() -> None:
    m = msg()
    assert m.schema_version == SCHEMA_VERSION
    with pytest.raises(ValidationError):
        m.text = "changed"  # type: ignore[misc]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="surprise"):
        msg(surprise=1)


def test_round_trip_through_json_keeps_the_kind() -> None:
    e = Edit(
        network="loopback",
        account_id="a",
        conversation_id="c",
        target_id="m1",
        sender=Sender(user_id="u"),
        text="new",
        version=2,
    )
    back = parse_event(e.model_dump_json())
    assert back == e and isinstance(back, Edit)


def test_naive_timestamps_are_refused() -> None:
    from datetime import datetime

    with pytest.raises(ValidationError, match="timezone"):
        msg(timestamp=datetime(2026, 1, 1))


def test_capabilities_supports() -> None:
    caps = Capabilities(edits=True, max_text_length=100)
    assert caps.supports("edits") and not caps.supports("reactions")
