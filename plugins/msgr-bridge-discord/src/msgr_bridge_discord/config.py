"""Per-account Discord settings (non-secret, chosen at link time) and the secret keys the connector reads.

The operator's ``[networks.discord]`` table gives the defaults a link starts from; ``allow_webhooks`` is the
operator's switch for sending as the person through channel webhooks. Secrets (``ctx.secrets``): ``token``,
the bot token; ``webhook:<channel id>``, the id and token of the webhook the bridge made in that channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from msgr_bridge.errors import ConfigError
from msgr_bridge.schema import AttachmentRule, Capabilities
from msgr_bridge.sdk.settings import OPERATOR_ONLY

CAPABILITIES = Capabilities(
    send=True,
    formatted_text=True,
    edits=True,
    deletes=True,
    reactions=True,
    replies=True,
    threads=True,
    read_receipts=False,
    typing=True,
    max_text_length=None,
    attachments=(AttachmentRule(mime_pattern="*/*", max_size=10 << 20),),
    history_catchup=True,
    rate_limit_per_s=1.0,
    rate_limit_burst=5,
)
"""Bots have no read state on Discord, so no read receipts either way. Long text is split at 2000
characters (``extra_parts``). The rate matches Discord's message bucket (5 per 5 s per channel)."""


SECRET_TOKEN = "token"
WEBHOOK_SECRET_PREFIX = "webhook:"

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_GUILD_MESSAGE_TYPING = 1 << 11
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_DIRECT_MESSAGE_TYPING = 1 << 14
INTENT_MESSAGE_CONTENT = 1 << 15
BASE_INTENTS = (
    INTENT_GUILDS
    | INTENT_GUILD_MESSAGES
    | INTENT_GUILD_MESSAGE_REACTIONS
    | INTENT_GUILD_MESSAGE_TYPING
    | INTENT_DIRECT_MESSAGES
    | INTENT_DIRECT_MESSAGE_REACTIONS
    | INTENT_DIRECT_MESSAGE_TYPING
)


class DiscordSettings(BaseModel):
    """Validated ``ctx.settings`` (the spot where the SDK's typed settings plug in)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    api_base: str = Field(
        "https://discord.com/api/v10", description="REST base URL", json_schema_extra=OPERATOR_ONLY
    )
    gateway_url: str | None = Field(
        None, description="gateway URL; default: what GET /gateway/bot says", json_schema_extra=OPERATOR_ONLY
    )
    compress: bool = Field(True, description="ask the gateway for zlib-stream compression")
    message_content_intent: bool = Field(
        True, description="declare MESSAGE_CONTENT (privileged: switch it on in the developer portal)"
    )
    members_intent: bool = Field(
        True, description="declare GUILD_MEMBERS (privileged): member joins and leaves, full member lists"
    )
    allow_webhooks: bool = Field(
        False, description="send as the person through a channel webhook (needs Manage Webhooks)"
    )
    person_name: str | None = Field(None, max_length=80, description="the name sends are shown under")
    person_avatar_url: str | None = Field(None, description="the avatar webhook sends show")
    backfill_messages: int = Field(50, ge=0, le=1000, description="messages per channel imported on linking")
    catchup_pages: int = Field(
        10, ge=1, le=100, description="pages of 100 fetched per channel after downtime"
    )
    timeout_s: float = Field(20.0, gt=0, description="seconds for the gateway handshake and REST calls")
    max_attachment_bytes: int = Field(10 << 20, ge=1, description="largest outbound file (Discord: 10 MiB)")

    @field_validator("api_base", "gateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"{value!r} is not an http(s) or ws(s) URL")
        return value.rstrip("/") if value else value

    @property
    def intents(self) -> int:
        intents = BASE_INTENTS
        if self.message_content_intent:
            intents |= INTENT_MESSAGE_CONTENT
        if self.members_intent:
            intents |= INTENT_GUILD_MEMBERS
        return intents

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> DiscordSettings:
        try:
            return cls.model_validate(dict(settings))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"Discord settings are invalid: {problems}") from None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)
