"""The loopback network's settings and capabilities: light (pydantic only), so the plugin's registration
imports this and not the connector."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from msgr_bridge.schema import AttachmentRule, Capabilities

CAPABILITIES = Capabilities(
    formatted_text=False,
    edits=True,
    deletes=True,
    reactions=True,
    replies=True,
    read_receipts=True,
    typing=True,
    max_text_length=10_000,
    attachments=(AttachmentRule(mime_pattern="*/*", max_size=100 * 1024 * 1024),),
    history_catchup=True,
    echoes_own_sends=True,  # the network sends our own posts back with their txn_id
)


class LoopbackSettings(BaseModel):
    """``[networks.loopback]`` and each loopback account's settings."""

    model_config = ConfigDict(extra="forbid")

    network: str = Field("default", min_length=1, description="the in-process network instance to join")
    url: str | None = Field(
        None,
        pattern=r"^wss?://",
        description="ws://HOST:PORT/ of a network hosted in another process (remote.RemoteNetworkServer)",
    )
    history_page: int = Field(5_000, ge=1, le=100_000, description="history payloads fetched per catch-up")
