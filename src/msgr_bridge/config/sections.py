"""The config sections, one model per ``[table]`` of the TOML file; each field's description is its doc.

``config/example.toml`` documents every key of these models (a test holds it to that), and a field's
description is also the hint a placeholder refusal gives (``put <description> there``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import model_validator as _model_validator

from ..credentials.refs import SecretRef
from ..errors import ConfigError
from .fields import Name, PluginNames, Port, Seconds, url_check

__all__ = [
    "ApiSection",
    "BridgeSection",
    "CredentialsSection",
    "DatabaseSection",
    "LoggingSection",
    "MediaSection",
    "OutboundSection",
    "PluginsSection",
    "PolicySection",
    "RedisSection",
    "RetentionSection",
    "Section",
    "SyncSection",
    "VaultSection",
]


class Section(BaseModel):
    """A config section: unknown keys are refused (typos), values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BridgeSection(Section):
    tenant: Name = Field("default", description="the tenant id: letters, digits, '_' and '-'")
    data_dir: Path = Field(Path("data"), description="the directory for state (database, keystore, files)")
    shutdown_timeout_s: Seconds = Field(10.0, description="seconds to finish in-flight work on shutdown")


class DatabaseSection(Section):
    url: str = Field(
        "",
        description="a database URL: sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db "
        "(empty: SQLite under data_dir)",
    )
    pool_size: int = Field(10, ge=1, le=200, description="connections kept open (PostgreSQL)")


class ApiSection(Section):
    host: str = Field("127.0.0.1", min_length=1, description="the address the HTTP API listens on")
    port: Port = Field(8080, description="the TCP port the HTTP API listens on")
    public_base_url: Annotated[str, url_check("http", "https")] = Field(
        "",
        description="the URL users reach the API at, e.g. https://bridge.your-domain.org (empty: host:port)",
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="the largest request body accepted")
    share_link_secret: SecretRef | None = Field(
        None,
        description="a reference to the HMAC key signing share links (empty: a key file generated under "
        "data_dir)",
    )
    share_link_ttl_s: Seconds = Field(7 * 86400.0, description="default lifetime of a share link in seconds")
    storage_backend: Literal["local", "s3"] = Field(
        "local",
        description='where share-link binaries live: "local" (disk) or "s3" (an S3-compatible bucket)',
    )
    storage_dir: Path | None = Field(
        None, description="the directory for local binaries (default data_dir/media)"
    )
    s3_endpoint_url: Annotated[str, url_check("http", "https")] = Field(
        "",
        description="the S3-compatible endpoint, e.g. https://minio.internal:9000 (empty: AWS S3 itself)",
    )
    s3_bucket: str = Field("", description="the name of an existing bucket, for storage_backend = s3")
    s3_region: str = Field(
        "us-east-1",
        min_length=1,
        description="the bucket's region (self-hosted servers mostly take us-east-1)",
    )
    s3_prefix: str = Field("", description="prepended to every object key, e.g. msgr-bridge/ (empty: none)")
    s3_access_key_id: SecretRef | None = Field(
        None,
        description="a reference to the S3 access key id (empty, with s3_secret_access_key empty too: the "
        "AWS default chain: AWS_* variables, ~/.aws, an instance role)",
    )
    s3_secret_access_key: SecretRef | None = Field(
        None, description="a reference to the S3 secret access key (set with s3_access_key_id)"
    )
    link_flow_ttl_s: Seconds = Field(600.0, description="seconds an unfinished account-link flow is kept")
    hook_max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="the largest body a platform may send to /hooks/ (connector callbacks)",
    )
    hook_timeout_s: Seconds = Field(
        10.0, description="seconds a connector may take to answer a call to /hooks/ (then 504)"
    )
    event_queue_max: int = Field(
        10_000,
        ge=16,
        description="events queued per stream client before it is told to resume from its cursor",
    )

    @_model_validator(mode="after")
    def _s3_complete(self) -> ApiSection:
        if self.storage_backend != "s3":
            return self
        if not self.s3_bucket:
            raise ValueError("s3_bucket is required when storage_backend = s3: put the bucket's name there")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "s3_access_key_id and s3_secret_access_key go together: set both (references) or "
                "neither (the AWS default credential chain)"
            )
        return self


def _networks(value: Any) -> list[str]:
    """CIDR networks, checked (``127.0.0.0/8``, ``fd00::/8``; a bare address is one host)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("must be a list of networks such as 10.0.0.0/8")
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(str(item), strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network such as 10.0.0.0/8 or fd00::/8") from None
    return out


class MediaSection(Section):
    fetch_remote: bool = Field(
        False,
        description="whether an attachment given as an http(s) URL is fetched for the network (false: "
        "attachments come from uploads and share links only)",
    )
    fetch_allow_networks: Annotated[list[str], BeforeValidator(_networks)] = Field(
        [],
        description="private, loopback or link-local networks a remote fetch may reach anyway, e.g. "
        '["10.1.2.0/24"] (empty: only public addresses)',
    )
    fetch_max_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1,
        description="the largest remote file fetched, in bytes (checked while reading)",
    )
    fetch_timeout_s: Seconds = Field(60.0, description="seconds a remote fetch may take in all")
    fetch_max_redirects: int = Field(
        3, ge=0, le=20, description="redirects followed by a remote fetch (each target is checked again)"
    )


SHIPPED_CONNECTORS: tuple[str, ...] = (
    "loopback",
    "xmpp",
    "irc",
    "matrix",
    "snapchat",
    "slack",
    "discord",
    "telegram",
    "signal",
    "whatsapp",
    "teams",
)
"""The connector plugins that ship with msgr-bridge (``plugins/``)."""
TEST_CONNECTORS: tuple[str, ...] = ("loopback",)
"""Shipped for tests and plugin authors, not for users: loaded only when ``[plugins] allow`` names them."""
DEFAULT_ALLOWED: tuple[str, ...] = tuple(n for n in SHIPPED_CONNECTORS if n not in TEST_CONNECTORS)
"""What ``[plugins] allow`` is unless the config says otherwise: the shipped networks, not the test one."""


class PluginsSection(Section):
    allow: PluginNames = Field(
        list(DEFAULT_ALLOWED),
        description='entry-point names of connector plugins to load; "*" loads every installed one',
    )
    deny: PluginNames = Field([], description="plugins never loaded, even when allowed")

    def allows(self, name: str) -> bool:
        """Whether the plugin ``name`` may load: listed (or ``*``) in ``allow`` and not in ``deny``."""
        return name not in self.deny and ("*" in self.allow or name in self.allow)


class VaultSection(Section):
    url: Annotated[str, url_check("http", "https")] = Field(
        "", description="the URL of your Vault or OpenBao server, e.g. https://vault.internal:8200"
    )
    auth: Literal["token", "approle"] = Field("token", description='"token" or "approle"')
    token: SecretRef | None = Field(
        SecretRef("env", "VAULT_TOKEN"), description="a reference to the Vault token (auth = token)"
    )
    role_id: str = Field("", description="the AppRole role id (auth = approle)")
    secret_id: SecretRef | None = Field(None, description="a reference to the AppRole secret id")
    approle_mount: str = Field(
        "approle", min_length=1, description="where the AppRole auth method is mounted"
    )
    namespace: str = Field("", description="the Vault Enterprise / OpenBao namespace (empty: none)")
    kv_mount: str = Field("secret", min_length=1, description="the KV v2 mount holding account secrets")
    prefix: str = Field("msgr-bridge/accounts", min_length=1, description="the KV path prefix for accounts")
    transit_mount: str = Field("transit", min_length=1, description="the Transit mount for blob encryption")
    key_name: str = Field("msgr-bridge", min_length=1, description="the Transit key name")
    verify: bool | str = Field(True, description="TLS verification: true, false or the path of a CA bundle")
    timeout_s: Seconds = Field(10.0, description="seconds before a Vault request times out")


class CredentialsSection(Section):
    backend: Literal["keystore", "vault"] = Field(
        "keystore", description='"keystore" (local file) or "vault"'
    )
    keystore_path: Path | None = Field(
        None, description="the encrypted keystore file (default data_dir/keystore.json)"
    )
    keystore_key: SecretRef = Field(
        SecretRef("env", "MSGR_BRIDGE_KEYSTORE_KEY"),
        description="a reference to the base64 keystore key (when it names an unset env variable, "
        "key_file is used instead)",
    )
    key_file: Path | None = Field(
        None, description="the keystore key file, generated on first run (default data_dir/keystore.key)"
    )
    expiry_warn_before_s: Seconds = Field(
        7 * 86400.0,
        description="seconds before a credential expires that its account turns credentials_expiring",
    )
    expiry_check_interval_s: Seconds = Field(
        3600.0, description="seconds between two checks of credential expiry dates"
    )
    vault: VaultSection = Field(default_factory=VaultSection)


class RedisSection(Section):
    url: Annotated[str, url_check("redis", "rediss", "unix")] = Field(
        "", description="a Redis URL such as redis://127.0.0.1:6379/0 (empty: in-memory rate limiter)"
    )


class LoggingSection(Section):
    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"],
        BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    ] = Field("info", description="debug, info, warning, error or critical")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="json, console, or auto (console on a terminal, JSON otherwise)"
    )


class OutboundSection(Section):
    max_attempts: int = Field(10, ge=1, le=1000, description="delivery attempts before a message fails")
    base_backoff_s: Seconds = Field(1.0, description="the first retry delay, doubled each attempt")
    max_backoff_s: Seconds = Field(600.0, description="the longest retry delay")
    max_rate_limit_wait_s: Seconds = Field(
        3600.0,
        description="a send the network keeps rate limiting is dead-lettered (with an alert) once its "
        "waits add up to more than this, or the network asks for a longer wait at once",
    )
    max_identical_rate_limits: int = Field(
        20,
        ge=2,
        le=10_000,
        description="... or once the network refused it this many times in a row with the same rate limit",
    )

    @_model_validator(mode="after")
    def _ordered(self) -> OutboundSection:
        if self.max_backoff_s < self.base_backoff_s:
            raise ValueError("max_backoff_s must be at least base_backoff_s")
        return self


class SyncSection(Section):
    interval_s: Seconds = Field(300.0, description="seconds between state syncs of each account")


class RetentionSection(Section):
    """What the retention job (``msgr_bridge.retention``) removes, and how often it runs."""

    interval_s: Seconds = Field(3600.0, description="seconds between runs of the retention job")
    share_links: bool = Field(
        True, description="remove expired, revoked and used-up share links and their stored files"
    )
    orphan_min_age_s: Seconds = Field(
        3600.0, description="remove a stored file no share link points at once it is this many seconds old"
    )
    messages_max_age_days: Annotated[float, Field(gt=0)] | None = Field(
        None, description="remove messages older than this many days (off when unset)"
    )
    quarantine_max_age_days: Annotated[float, Field(gt=0)] | None = Field(
        None, description="remove quarantined payloads older than this many days (off when unset)"
    )


class PolicySection(Section):
    """Outbound policy rules (``msgr_bridge.outbound.policy_rules`` documents each table). The tables are
    checked when the config loads, so a typo stops the bridge instead of silently dropping a rule."""

    dlp: dict[str, Any] = Field(
        default_factory=dict, description="DLP detectors: builtin, keywords, patterns and their action"
    )
    attachments: dict[str, Any] = Field(
        default_factory=dict, description="attachment rules: allow, deny (MIME patterns) and max_size"
    )
    destinations: list[dict[str, Any]] = Field(
        default_factory=list, description="per-workspace destination entries: tenant, users, networks"
    )
    send_caps: dict[str, Any] = Field(
        default_factory=dict, description="per-user send caps: max sends per window_s seconds"
    )

    @_model_validator(mode="after")
    def _valid_rules(self) -> PolicySection:
        from ..outbound.policy_rules import rules_from_config

        try:
            rules_from_config(self.model_dump())
        except ConfigError as exc:
            raise ValueError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        except (AttributeError, TypeError, KeyError) as exc:
            raise ValueError(f"policy: a table has the wrong shape ({exc})") from None
        return self
