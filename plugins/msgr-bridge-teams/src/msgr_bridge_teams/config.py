"""Teams settings: the operator's ``[networks.teams]`` (copied into each account when it is linked) and the
secret key of the msal token cache.

    client_id        the Azure AD application (client) id the operator registered (required)
    tenant           the directory (tenant) id or domain; "organizations" lets any work account sign in
    authority_host   the identity platform (default https://login.microsoftonline.com)
    graph_url        Microsoft Graph (default https://graph.microsoft.com/v1.0)
    ca_file          a CA file to trust instead of the system store (the fake's throwaway certificate)
    scopes           delegated permissions asked for (default: the ones in docs/networks/teams.md)
    poll_min_s       polling interval right after activity (default 5)
    poll_max_s       polling interval once idle; it grows by half each quiet round (default 60)
    chats_every      re-list the account's chats every this many rounds (default 5)
    channels         channels to follow, as "<team id>/<channel id>" (a list or comma-separated; default
                     none: each costs one delta request per round, plus one per thread with a new reply)
    refresh_margin_s renew the access token this long before it expires (default 300)
    receive          "auto" (change notifications when the bridge's hook URL is https, else polling),
                     "webhook" (change notifications whatever the URL) or "poll" (default "auto")
    webhook_poll_s   with change notifications: list the chats and poll what has no subscription this often
                     (default 300)
    subscription_s   lifetime asked for a subscription; renewed once a quarter is left (default 3300; Graph
                     allows chat-message subscriptions at most 3600)
    request_timeout_s one Graph request, at most (default 30)

Secrets (``ctx.secrets``): ``token_cache``, msal's serialized cache (the refresh token and access token with
their expiry: the renewal schedule is read back from it after a restart), and ``client_state``, the secret
Graph repeats in every change notification (``notify.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from msgr_bridge.errors import ConfigError
from msgr_bridge.schema import AttachmentRule, Capabilities
from msgr_bridge.sdk.settings import OPERATOR_ONLY

SECRET_TOKEN_CACHE = "token_cache"
DEFAULT_SCOPES = (
    "User.Read",
    "Chat.ReadWrite",
    "ChatMessage.Send",
    "ChannelMessage.Read.All",
    "ChannelMessage.Send",
    "ChannelMessage.ReadWrite",
    "Files.ReadWrite",
    "Files.ReadWrite.All",
    "Team.ReadBasic.All",
    "Channel.ReadBasic.All",
)


def _number(settings: Mapping[str, Any], name: str, default: float, minimum: float) -> float:
    value = settings.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"Teams setting {name!r} must be a number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"Teams setting {name!r} must be at least {minimum}, not {number}")
    return number


def _url(settings: Mapping[str, Any], name: str, default: str) -> str:
    value = str(settings.get(name) or default).rstrip("/")
    if not value.startswith("https://"):
        raise ConfigError(
            f"Teams setting {name!r} must be an https URL, not {value!r}",
            hint="msal refuses an authority that is not https; Graph is https only",
        )
    return value


def _receive(value: Any) -> Literal["auto", "webhook", "poll"]:
    if value in (None, ""):
        return "auto"
    if value not in ("auto", "webhook", "poll"):
        raise ConfigError(f"Teams setting 'receive' must be 'auto', 'webhook' or 'poll', not {value!r}")
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class TeamsSettings:
    client_id: str
    tenant: str = "organizations"
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_file: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    poll_min_s: float = 5.0
    poll_max_s: float = 60.0
    chats_every: int = 5
    channels: tuple[str, ...] = ()
    refresh_margin_s: float = 300.0
    request_timeout_s: float = 30.0
    receive: Literal["auto", "webhook", "poll"] = "auto"
    webhook_poll_s: float = 300.0
    subscription_s: float = 3300.0

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant}"

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> TeamsSettings:
        client_id = str(settings.get("client_id") or "").strip()
        if not client_id:
            raise ConfigError(
                "Teams needs the client id of an Azure AD application",
                hint="register one (docs/networks/teams.md) and set [networks.teams] client_id",
            )
        tenant = str(settings.get("tenant") or "organizations").strip()
        if not tenant or "/" in tenant:
            raise ConfigError(f"Teams setting 'tenant' is invalid: {tenant!r}")
        scopes = settings.get("scopes") or DEFAULT_SCOPES
        if isinstance(scopes, str):
            scopes = scopes.replace(",", " ").split()
        poll_min = _number(settings, "poll_min_s", 5.0, 0.05)
        channels = settings.get("channels") or ()
        if isinstance(channels, str):
            channels = [c.strip() for c in channels.split(",") if c.strip()]
        if not isinstance(channels, list | tuple) or not all(
            isinstance(c, str) and c.count("/") == 1 and all(c.split("/")) for c in channels
        ):
            raise ConfigError(
                "Teams setting 'channels' must list channels as '<team id>/<channel id>'",
                hint="find the ids with GET /me/joinedTeams and /teams/{id}/channels in Graph Explorer",
            )
        return cls(
            client_id=client_id,
            tenant=tenant,
            authority_host=_url(settings, "authority_host", "https://login.microsoftonline.com"),
            graph_url=_url(settings, "graph_url", "https://graph.microsoft.com/v1.0"),
            ca_file=str(settings["ca_file"]) if settings.get("ca_file") else None,
            scopes=tuple(str(s) for s in scopes),
            poll_min_s=poll_min,
            poll_max_s=max(poll_min, _number(settings, "poll_max_s", 60.0, 0.05)),
            chats_every=int(_number(settings, "chats_every", 5, 1)),
            channels=tuple(channels),
            refresh_margin_s=_number(settings, "refresh_margin_s", 300.0, 0),
            request_timeout_s=_number(settings, "request_timeout_s", 30.0, 1),
            receive=_receive(settings.get("receive")),
            webhook_poll_s=_number(settings, "webhook_poll_s", 300.0, 0.05),
            subscription_s=min(3600.0, _number(settings, "subscription_s", 3300.0, 1)),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "client_id": self.client_id,
            "tenant": self.tenant,
            "authority_host": self.authority_host,
            "graph_url": self.graph_url,
            "scopes": list(self.scopes),
            "poll_min_s": self.poll_min_s,
            "poll_max_s": self.poll_max_s,
            "chats_every": self.chats_every,
            "channels": list(self.channels),
            "refresh_margin_s": self.refresh_margin_s,
            "request_timeout_s": self.request_timeout_s,
            "receive": self.receive,
            "webhook_poll_s": self.webhook_poll_s,
            "subscription_s": self.subscription_s,
        }
        if self.ca_file:
            out["ca_file"] = self.ca_file
        return out


class TeamsSettingsModel(BaseModel):
    """The same keys as a pydantic model, for the core (``settings_model``): ``[networks.teams]`` and every
    account's settings are checked against it at link time, at start and by ``msgr-bridge config check``.
    ``TeamsSettings.from_mapping`` stays the connector's own parser (it also accepts comma strings)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(description="application (client) id of the Azure AD app registration")
    tenant: str = Field("organizations", description="directory (tenant) id or domain, or 'organizations'")
    authority_host: str = Field(
        "https://login.microsoftonline.com",
        description="the identity platform",
        json_schema_extra=OPERATOR_ONLY,
    )
    graph_url: str = Field(
        "https://graph.microsoft.com/v1.0", description="Microsoft Graph", json_schema_extra=OPERATOR_ONLY
    )
    ca_file: str | None = Field(
        None, description="CA file to trust instead of the system store", json_schema_extra=OPERATOR_ONLY
    )
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES), description="delegated scopes")
    poll_min_s: float = Field(5.0, ge=0.05, description="polling interval after activity")
    poll_max_s: float = Field(60.0, ge=0.05, description="polling interval once idle")
    chats_every: int = Field(5, ge=1, description="re-list the chats every this many rounds")
    channels: list[str] = Field(default_factory=list, description="channels to follow: '<team>/<channel>'")
    refresh_margin_s: float = Field(300.0, ge=0, description="renew the access token this long before expiry")
    request_timeout_s: float = Field(30.0, ge=1, description="one Graph request, at most")
    receive: Literal["auto", "webhook", "poll"] = Field(
        "auto", description="change notifications (webhook), polling, or auto: webhook when the URL is https"
    )
    webhook_poll_s: float = Field(
        300.0, ge=0.05, description="with notifications: the fallback polling interval"
    )
    subscription_s: float = Field(
        3300.0, ge=1, le=3600, description="lifetime of a change-notification subscription"
    )
    user_principal_name: str | None = Field(None, description="the signed-in account (set at link time)")
    flow: Literal["device_code", "auth_code"] = Field("device_code", description="link flow")


MAX_BYTES = 250 * 1024 * 1024
"""The largest file sent: Graph's limit for a simple upload (larger ones need an upload session)."""

CAPABILITIES = Capabilities(
    send=True,
    formatted_text=True,
    edits=True,
    deletes=True,
    reactions=True,
    replies=True,
    threads=True,
    read_receipts=True,
    typing=False,
    attachments=(AttachmentRule(max_size=MAX_BYTES),),
    max_text_length=28_000,
    history_catchup=True,
    echoes_own_sends=True,
    rate_limit_per_s=1.0,
    rate_limit_burst=5,
)
"""What the connector does: declared here so the plugin registers without importing its client library."""
