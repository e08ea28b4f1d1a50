"""Telegram settings (the operator's ``[networks.telegram]`` table merged with the account's own) and the
secret keys the connector keeps in the credential layer.

Settings::

    api_id          the operator's application id from https://my.telegram.org (required)
    api_hash        its hash (required at link time; stored with the account's secrets afterwards)
    request_timeout seconds one request to Telegram may take (default 20)
    liveness_s      seconds between liveness checks (updates.getState) on an idle connection; a revoked
                    session is found by the first one (default 60)
    buffer_max      updates kept while the connector waits for the core to subscribe (default 10000)
    history_import  messages per conversation imported when the account is linked (default 50; 0: none)
    max_file_bytes  the largest file sent or stored, either way (default 50 MiB; Telegram's own limit
                    for an account is 2000 MiB); ``[media]`` limits of the core apply as well

Secrets (``ctx.secrets``): ``session`` (a Telethon ``StringSession``: data centre, address and auth key),
``api_hash``, and ``link_state``: the update state when the account was linked (JSON, as ``state.py``),
where the first catch-up starts, so nothing written after the link is lost while the bridge starts. The
session is never written to a ``.session`` file.

``MSGR_BRIDGE_TELEGRAM_TEST_SERVER=host:port`` (environment only, so an API client cannot point the bridge
anywhere) sends new logins to a fake Telegram (``msgr_bridge.testing.fakes.telegram``) and trusts its
throwaway RSA key. Never set it in production.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from msgr_bridge.errors import ConfigError
from msgr_bridge.schema import AttachmentRule, Capabilities

SECRET_SESSION = "session"
SECRET_API_HASH = "api_hash"
SECRET_LINK_STATE = "link_state"
TEST_SERVER_ENV = "MSGR_BRIDGE_TELEGRAM_TEST_SERVER"
DEFAULT_DC = (2, "149.154.167.50", 443)
"""Telegram's production DC 2, where Telethon starts too; a login is migrated to the account's own DC."""


class TelegramSettings(BaseModel):
    """The settings the connector reads (the SDK's typed settings model slots in here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    api_id: int = Field(gt=0)
    api_hash: str | None = Field(default=None, min_length=1, repr=False)
    request_timeout: float = Field(default=20.0, gt=0, le=300)
    liveness_s: float = Field(default=60.0, gt=0)
    buffer_max: int = Field(default=10_000, ge=100)
    history_import: int = Field(default=50, ge=0, le=10_000)
    max_file_bytes: int = Field(default=50 * 1024 * 1024, gt=0, le=2000 * 1024 * 1024)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> TelegramSettings:
        try:
            return cls.model_validate(dict(settings))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(
                f"Telegram settings are invalid: {problems}",
                hint="set api_id and api_hash in [networks.telegram] (from https://my.telegram.org)",
            ) from None


def test_server() -> tuple[int, str, int] | None:
    """The fake Telegram to log in to, from the environment (None in production)."""
    value = os.environ.get(TEST_SERVER_ENV, "").strip()
    if not value:
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{TEST_SERVER_ENV} must be host:port, not {value!r}")
    from telethon.crypto import rsa

    from msgr_bridge.testing.fakes.telegram.keys import PUBLIC_KEY_PEM

    rsa.add_key(PUBLIC_KEY_PEM, old=False)
    return 2, host, int(port)


MAX_TEXT = 4096

CAPABILITIES = Capabilities(
    send=True,
    formatted_text=True,
    edits=True,
    edit_max_age_s=48 * 3600,
    deletes=True,
    reactions=True,
    replies=True,
    threads=True,
    read_receipts=True,
    typing=True,
    max_text_length=MAX_TEXT,
    history_catchup=True,
    e2ee=False,
    rate_limit_per_s=1.0,
    rate_limit_burst=3,
    attachments=(AttachmentRule(mime_pattern="*/*", max_size=50 * 1024 * 1024),),
)
"""What the connector does: declared here so the plugin registers without importing its client library."""
