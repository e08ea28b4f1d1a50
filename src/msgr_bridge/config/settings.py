"""The ``Settings`` model: the sections together, their sources in priority order, derived defaults, and
the checks that span sections (placeholders, plain secrets in network tables, Vault requirements)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, PrivateAttr
from pydantic import model_validator as _model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..credentials.refs import SecretRef
from ..errors import ConfigError
from ..flags import FlagRule, check_flag_names
from ..observability.logging import looks_secret
from .fields import Name
from .ops_sections import AlertsSection, MetricsSection, TracingSection
from .sections import (
    ApiSection,
    BridgeSection,
    CredentialsSection,
    DatabaseSection,
    LoggingSection,
    MediaSection,
    OutboundSection,
    PluginsSection,
    PolicySection,
    RedisSection,
    RetentionSection,
    SyncSection,
    VaultSection,
)

__all__ = ["DEFAULT_CONFIG_PATH", "ENV_CONFIG_PATH", "ENV_PREFIX", "Settings", "file_data"]

DEFAULT_CONFIG_PATH = Path("config/msgr-bridge.toml")
ENV_CONFIG_PATH = "MSGR_BRIDGE_CONFIG"
ENV_PREFIX = "MSGR_BRIDGE__"

_PLACEHOLDER = re.compile(
    r"^\s*(change[_ -]?me|replace[_ -]?me|todo|fixme|tbd|x{3,}|\.\.\.|your[_ -].*)\s*$"
    r"|change[_-]?me|replace[_-]?me|<[^<>]*>|\$\{[^}]*\}",
    re.IGNORECASE,
)
_EXAMPLE_HOST = re.compile(r"(^|\.)example\.(com|org|net)$", re.IGNORECASE)


file_data: ContextVar[Mapping[str, Any] | None] = ContextVar("msgr_bridge_config_file", default=None)
"""The parsed TOML file while ``load_settings`` builds a ``Settings``; read by the file source."""


class _FileSource(PydanticBaseSettingsSource):
    """The parsed TOML file, below the environment in priority."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return copy.deepcopy(dict(file_data.get() or {}))


class Settings(BaseSettings):
    """Every setting of the bridge. Build it with ``load_settings``; sections are documented per field."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False, extra="forbid"
    )

    bridge: BridgeSection = Field(default_factory=BridgeSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    api: ApiSection = Field(default_factory=ApiSection)
    plugins: PluginsSection = Field(default_factory=PluginsSection)
    credentials: CredentialsSection = Field(default_factory=CredentialsSection)
    redis: RedisSection = Field(default_factory=RedisSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    outbound: OutboundSection = Field(default_factory=OutboundSection)
    sync: SyncSection = Field(default_factory=SyncSection)
    policy: PolicySection = Field(default_factory=PolicySection)
    media: MediaSection = Field(default_factory=MediaSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    tracing: TracingSection = Field(default_factory=TracingSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    networks: dict[Name, dict[str, Any]] = Field(
        default_factory=dict, description="one free-form table per network, passed to its connector"
    )
    flags: dict[str, FlagRule] = Field(
        default_factory=dict,
        description="feature flags: a network or a capability on for a cohort (msgr_bridge.flags)",
    )

    _source: Path | None = PrivateAttr(default=None)
    _embedded_database: bool = PrivateAttr(default=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSource(settings_cls)

    @_model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        data = self.bridge.data_dir
        if not self.database.url:
            self.database.url = f"sqlite+aiosqlite:///{data / 'msgr-bridge.db'}"
            self._embedded_database = True
        if self.credentials.keystore_path is None:
            self.credentials.keystore_path = data / "keystore.json"
        if self.credentials.key_file is None:
            self.credentials.key_file = data / "keystore.key"
        if not self.api.public_base_url:
            host = f"[{self.api.host}]" if ":" in self.api.host else self.api.host
            self.api.public_base_url = f"http://{host}:{self.api.port}"
        problems = _placeholders(self, ())
        problems += _network_secrets(self.networks)
        problems += _vault_requirements(self.credentials)
        problems += check_flag_names(self.flags)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def embedded_database(self) -> bool:
        """Whether the database is the embedded default (SQLite under data_dir: no ``[database] url``)."""
        return self._embedded_database

    @property
    def source_path(self) -> Path | None:
        """The TOML file these settings were read from, or None (defaults and environment only)."""
        return self._source


def _hint(model: type[BaseModel], field: str) -> str:
    info = model.model_fields.get(field)
    return f"put {info.description} there" if info is not None and info.description else "set a real value"


def _placeholders(model: BaseModel, path: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = ".".join((*path, name))
        if isinstance(value, BaseModel):
            problems += _placeholders(value, (*path, name))
            continue
        for item in _strings(value, where):
            text, loc = item
            if _PLACEHOLDER.search(text):
                hint = (
                    "set the value its connector documents"
                    if name == "networks"
                    else _hint(type(model), name)
                )
                problems.append(f"{loc}: {text!r} is a placeholder; {hint}")
            elif name in ("url", "public_base_url") and _EXAMPLE_HOST.search(urlsplit(text).hostname or ""):
                problems.append(
                    f"{loc}: {urlsplit(text).hostname} is an example host; {_hint(type(model), name)}"
                )
    return problems


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(value, where)]
    if isinstance(value, SecretRef):
        return [(value.path, where)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, where)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{where}.{k}")]
    return []


def _network_secrets(networks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    problems = []
    for net, table in networks.items():
        for key, value in table.items():
            if looks_secret(key) and isinstance(value, str):
                try:
                    SecretRef.parse(value)
                except ConfigError:
                    problems.append(
                        f"networks.{net}.{key}: a plain secret is not allowed here; "
                        "use env://NAME, file://PATH or vault://PATH#KEY and put the secret there"
                    )
    return problems


def _vault_requirements(creds: CredentialsSection) -> list[str]:
    vault = creds.vault
    if creds.backend != "vault":
        return []
    problems = []
    if not vault.url:
        problems.append(f"credentials.vault.url: required when backend = vault; {_hint(VaultSection, 'url')}")
    if vault.auth == "token" and vault.token is None:
        problems.append(
            "credentials.vault.token: required when auth = token; put a reference to the token there"
        )
    if vault.auth == "approle" and (not vault.role_id or vault.secret_id is None):
        problems.append("credentials.vault: auth = approle needs role_id and secret_id (a reference)")
    return problems
