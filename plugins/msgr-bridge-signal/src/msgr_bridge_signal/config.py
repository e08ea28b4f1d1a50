"""Signal settings: ``[networks.signal]`` (the operator's) merged with what linking stored per account.

base_url               signal-cli-rest-api's address, e.g. "http://signal-api:8080" (required)
device_name            the name the linked device gets in the phone's list (default "msgr-bridge")
receive                "auto" (default: the websocket in json-rpc mode, polling otherwise),
                       "websocket" or "poll"
poll_timeout_s         seconds one GET /v1/receive waits for messages in normal mode (default 5)
liveness_interval_s    seconds between checks that the number is still linked while nothing arrives
                       (default 300): an unlinked device is noticed even when no request fails
rate_limit_retry_s     how long a send waits after a plain 429, which carries no Retry-After (60)
max_attachment_bytes   largest file sent or received (default 100 MiB, Signal's own limit)
request_timeout_s      seconds one REST call may take (default 60)
link_existing_accounts true lets linking claim a number that is already linked or registered on the
                       REST API by naming it, without scanning a new code (default false: only for a
                       REST API that serves one person)
number                 the account's number, stored at link time
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from msgr_bridge.schema import AttachmentRule, Capabilities
from msgr_bridge.sdk.settings import OPERATOR_ONLY, validate_settings

MAX_ATTACHMENT = 100 * 1024 * 1024
CAPABILITIES = Capabilities(
    send=True,
    formatted_text=True,
    edits=True,
    edit_max_age_s=24 * 3600,
    deletes=True,
    delete_max_age_s=24 * 3600,
    reactions=True,
    replies=True,
    read_receipts=True,
    typing=True,
    attachments=(AttachmentRule(mime_pattern="*/*", max_size=MAX_ATTACHMENT),),
    history_catchup=False,
    e2ee=True,
    rate_limit_per_s=1.0,
    rate_limit_burst=5,
)
"""Signal's apps honour edits and deletes for 24 hours; no threads; no server-side history, so no
catch-up (what arrives while no websocket listens is lost in json-rpc mode, kept by Signal in normal
mode). The send rate is a cautious guess: Signal publishes no limits and meets bursts with challenges."""


E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MIB = 1024 * 1024


class SignalSettings(BaseModel):
    """The connector's ``settings_model``: validated at link time, at every start, and by
    ``msgr-bridge config check`` for ``[networks.signal]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        description="signal-cli-rest-api's address, e.g. http://signal-api:8080",
        json_schema_extra=OPERATOR_ONLY,
    )
    number: str = Field("", description="the account's phone number with country code (set by linking)")
    device_name: str = Field("msgr-bridge", min_length=1, max_length=50, description="linked device's name")
    receive: Literal["auto", "websocket", "poll"] = Field("auto", description="how messages are received")
    poll_timeout_s: float = Field(5.0, ge=1, le=300, description="seconds one poll waits (normal mode)")
    liveness_interval_s: float = Field(300.0, ge=0.05, description="link check while nothing arrives (s)")
    rate_limit_retry_s: float = Field(60.0, ge=0, description="wait after a plain 429 (s)")
    max_attachment_bytes: int = Field(100 * MIB, ge=1, le=100 * MIB, description="largest file either way")
    request_timeout_s: float = Field(60.0, ge=0.1, description="seconds one REST call may take")
    link_existing_accounts: bool = Field(
        False, description="linking may claim a number the REST API holds already (one-person setups only)"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be signal-cli-rest-api's http(s) address, not {value!r}")
        return value

    @field_validator("number")
    @classmethod
    def _phone_number(cls, value: str) -> str:
        value = value.strip()
        if value and not E164.match(value):
            raise ValueError(f"must be a phone number like +4915112345678, not {value!r}")
        return value

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> SignalSettings:
        """Validated settings; ``ConfigError`` naming each bad key."""
        return cast(SignalSettings, validate_settings(cls, settings, network="signal"))
