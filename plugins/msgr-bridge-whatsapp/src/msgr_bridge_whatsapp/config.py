"""Per-account WhatsApp settings (a pydantic model) and the secret keys the connector reads.

Settings (``ctx.settings``; operator defaults from ``[networks.whatsapp]``)::

    device_name             how the linked device is named on the phone (default "msgr-bridge")
    isolate                 run neonize (a Go runtime) in a child process (default false)
    connect_timeout_s       how long connecting may take before it counts as failed (default 60)
    send_interval_s         least time between two sends of the account (default 1.0)
    send_jitter_s           a random extra wait of up to this much per send (default 1.5)
    relogin_base_s          the first wait before logging in again after a failed login (default 10)
    relogin_cap_s           the longest wait between logins (default 1800)
    relogin_alert_after     failed logins in a row after which an alert is logged (default 3)
    session_save_interval_s how often the session database is saved to the credential layer (default 60)
    media_max_bytes         largest file received or sent (default 100 MB: neonize holds it in memory)

Secrets (``ctx.secrets``): ``session``, the whatsmeow session database (SQLite, its device keys and
Signal sessions), compressed and base64-encoded; the credential layer encrypts it at rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from msgr_bridge.errors import ConfigError
from msgr_bridge.schema import AttachmentRule, Capabilities

SECRET_SESSION = "session"
DEFAULT_MEDIA_MAX_BYTES = 100 * 1024 * 1024


class WhatsAppSettings(BaseModel):
    """Validated settings of one linked WhatsApp account (an unknown key, a typo, is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jid: str = ""
    device_name: str = Field("msgr-bridge", min_length=1, max_length=60)
    isolate: bool = False
    connect_timeout_s: float = Field(60.0, gt=0, le=3600)
    send_interval_s: float = Field(1.0, ge=0, le=3600)
    send_jitter_s: float = Field(1.5, ge=0, le=3600)
    relogin_base_s: float = Field(10.0, ge=0, le=86_400)
    relogin_cap_s: float = Field(1800.0, ge=0, le=86_400)
    relogin_alert_after: int = Field(3, ge=1, le=1000)
    session_save_interval_s: float = Field(60.0, gt=0, le=86_400)
    media_max_bytes: int = Field(DEFAULT_MEDIA_MAX_BYTES, ge=1, le=2 * 1024 * 1024 * 1024)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> WhatsAppSettings:
        """Validate; raises ``ConfigError`` naming the bad key."""
        try:
            return cls.model_validate({k: v for k, v in settings.items() if k != SECRET_SESSION})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"WhatsApp setting {key!r}: {first['msg']}") from None

    def stored(self) -> dict[str, Any]:
        """What the account keeps (operator defaults stay in the config file)."""
        return {"jid": self.jid, "device_name": self.device_name}


CAPABILITIES = Capabilities(
    send=True,
    edits=True,
    edit_max_age_s=15 * 60,
    deletes=True,
    delete_max_age_s=2 * 24 * 3600,
    reactions=True,
    replies=True,
    read_receipts=True,
    typing=True,
    max_text_length=65_536,
    attachments=(AttachmentRule(mime_pattern="*/*", max_size=DEFAULT_MEDIA_MAX_BYTES),),
    history_catchup=False,
    rate_limit_per_s=0.5,
    rate_limit_burst=2,
)
"""What the connector does: declared here so the plugin registers without importing its client library."""
