"""The XMPP network's settings and capabilities: light (pydantic only), so registering the plugin imports
this and not slixmpp. ``[networks.xmpp]`` holds the operator's defaults; an account's own settings (its
rooms and nick, chosen when it is linked) win."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from msgr_bridge.schema import Capabilities
from msgr_bridge.sdk.settings import OPERATOR_ONLY
from msgr_bridge.sdk.state import MAX_MAP_ENTRIES

OPERATOR: dict[str, Any] = {"json_schema_extra": OPERATOR_ONLY}

CAPABILITIES = Capabilities(
    send=True,
    edits=True,  # XEP-0308; receiving clients decide how old a message may still be corrected
    deletes=True,
    reactions=True,
    replies=True,  # XEP-0461
    read_receipts=True,
    typing=True,
    history_catchup=True,
    attachments=(),  # no XEP-0363 upload yet (inbound OOB links do arrive as attachments)
    rate_limit_per_s=5.0,
    rate_limit_burst=10,
    echoes_own_sends=True,  # rooms reflect our messages; the txn_id travels as the stanza/origin id
)

LEGACY_SETTINGS = ("id_flush_interval",)
"""Settings of older versions, dropped when read (ids are now written as they are seen)."""


class XmppSettings(BaseModel):
    """``[networks.xmpp]`` and each XMPP account's settings. A person linking chooses ``rooms`` and ``nick``;
    the rest is the operator's (``OPERATOR_ONLY``): where the bridge connects and which CA file it reads are
    never up to a link request or answer."""

    model_config = ConfigDict(extra="forbid")

    server: str | None = Field(
        None, description="host (default: the JID domain's SRV records); needs 'port'", **OPERATOR
    )
    port: int | None = Field(None, ge=1, le=65535, description="TCP port, with 'server'", **OPERATOR)
    security: Literal["starttls", "direct_tls", "plaintext"] = Field(
        "starttls",
        description="starttls (certificate verified), direct_tls (XEP-0368 port) or plaintext (a test "
        "server on loopback only: passwords travel in the clear)",
        **OPERATOR,
    )
    ca_file: str | None = Field(None, description="a CA bundle to trust instead of the system's", **OPERATOR)
    rooms: list[str] = Field(
        default_factory=list, description="group chats (MUC room JIDs) to join, comma separated"
    )
    nick: str | None = Field(None, description="nickname in group chats (default: the JID's local part)")
    resource: str = Field("msgr-bridge", min_length=1, description="the session's resource", **OPERATOR)
    ping_interval: float = Field(60.0, gt=0, description="seconds between keepalive pings", **OPERATOR)
    ping_timeout: float = Field(20.0, gt=0, description="seconds to wait for a ping's answer", **OPERATOR)
    read_queue: int = Field(
        1024, ge=1, le=100_000, description="stanzas read ahead of the pipeline (then TCP waits)", **OPERATOR
    )
    reaction_sets: int = Field(
        8192, ge=1, le=MAX_MAP_ENTRIES, description="reaction sets (message, sender) remembered", **OPERATOR
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if k not in LEGACY_SETTINGS}
        return values

    @field_validator("port", "read_queue", "reaction_sets", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a whole number, not a boolean")
        return value

    @field_validator("rooms")
    @classmethod
    def _room_jids(cls, rooms: list[str]) -> list[str]:
        """Bare room JIDs as slixmpp normalises them (imported here, when settings are checked, not when
        the plugin registers)."""
        from slixmpp.jid import JID, InvalidJID

        out = []
        for room in rooms:
            try:
                jid = JID(room.strip())
            except InvalidJID:
                jid = JID()
            if not jid.user or not jid.domain or jid.resource:
                raise ValueError(
                    f"not a room address: {room!r} (rooms look like room@conference.example.org)"
                )
            out.append(str(jid.bare))
        return out

    @field_validator("nick")
    @classmethod
    def _nick(cls, nick: str | None) -> str | None:
        return (nick or "").strip() or None
