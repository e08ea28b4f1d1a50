"""The Matrix network's settings and capabilities: light (pydantic only), so the plugin's registration
imports this and not mautrix.

``auto_join_from`` lists the inviters whose invites are joined by themselves (``sync.InviteJoiner``): user
ids (``@alice:example.org``), ``*:example.org`` (anyone on that homeserver) or ``*`` (anyone).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from msgr_bridge.schema import AttachmentRule, Capabilities

CAPABILITIES = Capabilities(
    send=True,
    formatted_text=True,
    edits=True,
    deletes=True,
    reactions=True,
    replies=True,
    threads=True,
    read_receipts=True,
    typing=True,
    max_text_length=16_000,  # an event is at most 64 KiB of JSON, body and formatted body together
    attachments=(AttachmentRule(mime_pattern="*/*"),),  # max_size: the server's m.upload.size, on connect
    history_catchup=True,
    e2ee=False,
    echoes_own_sends=True,  # /sync returns our own events with unsigned.transaction_id
)

AUTO_JOIN_EXAMPLE = 'e.g. auto_join_from = ["@alice:example.org", "*:example.org"]'


def _inviter_pattern(item: Any) -> str:
    if isinstance(item, str):
        local, sep, server = item.partition(":")
        user_id = item.startswith("@") and len(local) > 1 and bool(sep and server) and "*" not in item
        if user_id or item == "*" or (item.startswith("*:") and len(item) > 2):
            return item
    raise ValueError(f"{item!r} is not @user:server, *:server or * ({AUTO_JOIN_EXAMPLE})")


class MatrixSettings(BaseModel):
    """``[networks.matrix]`` and each Matrix account's settings."""

    model_config = ConfigDict(extra="forbid")

    homeserver: str = Field(
        pattern=r"^https?://[^/\s]+",
        description="the client-server API base URL, e.g. https://matrix.example.org",
    )
    user_id: str | None = Field(
        None, description="@user:server (or a localpart), for password logins; set when the account is linked"
    )
    timeline_limit: int = Field(50, ge=1, le=1000, description="events per room in one sync answer")
    max_backfill: int = Field(
        1000, ge=1, le=100_000, description="events fetched through /messages to close one gap in a room"
    )
    auto_join_from: list[str] = Field(
        default_factory=list,
        description='inviters whose room invites are joined: "@user:server", "*:server" or "*"; '
        "empty: every invite is only reported",
    )
    auto_join_invites: bool = Field(
        True, description="false: no invite is joined by itself, whatever auto_join_from says"
    )

    @field_validator("auto_join_from", mode="before")
    @classmethod
    def _inviter_patterns(cls, value: Any) -> list[str]:
        """A list of inviter patterns, or one string of them separated by commas or spaces (a form answer)."""
        if value is None:
            return []
        if isinstance(value, str | list | tuple):
            items = [p for v in ([value] if isinstance(value, str) else value) for p in _split(v)]
            return [_inviter_pattern(item) for item in items]
        raise ValueError(f"must be a list of user ids, got {value!r} ({AUTO_JOIN_EXAMPLE})")


def _split(item: Any) -> list[Any]:
    return item.replace(",", " ").split() if isinstance(item, str) else [item]
