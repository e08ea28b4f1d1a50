"""Per-account Slack settings (a pydantic model) and the secret keys the connector reads.

Settings (``ctx.settings``, stored at link time; operator defaults from ``[networks.slack]``)::

    api_url               the Web API base (default https://slack.com/api/; the fake's base_url in tests)
    team_id, user_id      who the account is (from auth.test at link time)
    history_per_minute    conversations.history/replies calls a minute (default 1: Slack's limit since
                          May 2025 for apps not in the Slack Marketplace; raise it for Marketplace apps)
    history_page_size     messages a history call asks for (default 15, the same limit's page size)
    history_days          how far back catch-up looks for a conversation it has never seen (default 1)
    history_max_wait_s    longest the connect-time sync waits for the history limit; what it cannot wait
                          for is fetched in the background while subscribed (default 5)
    liveness_interval_s   auth.test every N seconds, to find a token Slack never told us was revoked (300)
    ping_interval_s       websocket pings every N seconds (default 15)
    silence_timeout_s     a socket with no frame (pong included) for N seconds is deaf: reconnect (45)
    public_base_url       the bridge's public URL, for the OAuth redirect flow (not supported yet)

Secrets (``ctx.secrets``): ``token`` (``xoxp-`` OAuth user token or ``xoxc-`` browser session token),
``app_token`` (``xapp-``, Socket Mode), ``cookie_d`` (the browser's ``d`` cookie, with ``xoxc-``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from msgr_bridge.errors import ConfigError
from msgr_bridge.schema import AttachmentRule, Capabilities
from msgr_bridge.sdk.settings import OPERATOR_ONLY

SECRET_TOKEN = "token"
SECRET_APP_TOKEN = "app_token"
SECRET_COOKIE = "cookie_d"
SECRETS = (SECRET_TOKEN, SECRET_APP_TOKEN, SECRET_COOKIE)
DEFAULT_API_URL = "https://slack.com/api/"


class SlackSettings(BaseModel):
    """Validated settings of one linked Slack account (unknown keys are ignored, never stored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    api_url: str = Field(DEFAULT_API_URL, json_schema_extra=OPERATOR_ONLY)
    team_id: str = ""
    user_id: str = ""
    history_per_minute: float = Field(1.0, gt=0, le=100_000)
    history_page_size: int = Field(15, ge=1, le=999)
    history_days: float = Field(1.0, ge=0, le=3650)
    history_max_wait_s: float = Field(5.0, ge=0, le=3600)
    liveness_interval_s: float = Field(300.0, ge=0.1)
    ping_interval_s: float = Field(15.0, ge=0.05)
    silence_timeout_s: float = Field(45.0, ge=0.1)
    public_base_url: str = ""

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("api_url must be an http(s) URL, e.g. https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> SlackSettings:
        """Validate; raises ``ConfigError`` naming the bad key."""
        try:
            return cls.model_validate({k: v for k, v in settings.items() if k not in SECRETS})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"Slack setting {key!r}: {first['msg']}") from None

    def stored(self) -> dict[str, Any]:
        """What the account keeps (operator defaults stay in the config file)."""
        return {"api_url": self.api_url, "team_id": self.team_id, "user_id": self.user_id}


def token_kind(token: str) -> str:
    """``user`` (xoxp), ``session`` (xoxc), ``bot`` (xoxb), ``app`` (xapp) or ``unknown``."""
    for prefix, kind in (("xoxp-", "user"), ("xoxc-", "session"), ("xoxb-", "bot"), ("xapp-", "app")):
        if token.startswith(prefix):
            return kind
    return "unknown"


MAX_FILE_BYTES = 1024 * 1024 * 1024

CAPABILITIES = Capabilities(
    send=True,
    formatted_text=True,
    edits=True,
    deletes=True,
    reactions=True,
    replies=False,
    threads=True,
    read_receipts=True,
    typing=False,
    max_text_length=40_000,
    attachments=(AttachmentRule(mime_pattern="*/*", max_size=MAX_FILE_BYTES),),
    history_catchup=True,
    rate_limit_per_s=1.0,
    rate_limit_burst=3,
)
"""What the connector does: declared here so the plugin registers without importing its client library."""
