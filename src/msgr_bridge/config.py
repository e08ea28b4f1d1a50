"""Typed settings: one TOML file, environment overrides, secret references, and refusal of placeholders.

Where the settings come from, strongest first:

1. ``overrides`` given by the CLI (``msgr-bridge run --host/--port``);
2. environment variables ``MSGR_BRIDGE__SECTION__KEY`` (``MSGR_BRIDGE__API__PORT=9000``,
   ``MSGR_BRIDGE__CREDENTIALS__VAULT__URL=...``, ``MSGR_BRIDGE__NETWORKS__IRC__SERVER=...``); lists take
   JSON or commas (``MSGR_BRIDGE__PLUGINS__ALLOW=loopback,irc``);
3. the TOML file: ``--config PATH``, else ``$MSGR_BRIDGE_CONFIG``, else ``config/msgr-bridge.toml`` in the
   working directory when it exists;
4. built-in defaults (``config/example.toml`` documents every key and its default).

Relative paths are relative to the working directory; state lives under ``./data`` unless
``[bridge] data_dir`` says otherwise. Secrets are never written in the file: a ``SecretRef`` field takes
``env://NAME``, ``file://PATH`` or ``vault://PATH#KEY``, and so must any secret-looking key (``password``,
``token``, ...) in a ``[networks.<name>]`` table. Unknown keys are refused (they are usually typos), and so
are placeholders such as ``CHANGE_ME``, ``<your token>`` or an ``example.com`` address. Every problem is a
``ConfigError`` naming the key path (``api.port: must be 0-65535 ...``) and where the bad value came from.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)
from pydantic import model_validator as _model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from .credentials.refs import SecretRef
from .errors import ConfigError
from .observability.logging import looks_secret, register_secret

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_CONFIG_PATH",
    "ENV_PREFIX",
    "Settings",
    "effective_config",
    "load_settings",
]

DEFAULT_CONFIG_PATH = Path("config/msgr-bridge.toml")
ENV_CONFIG_PATH = "MSGR_BRIDGE_CONFIG"
ENV_PREFIX = "MSGR_BRIDGE__"

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_PLACEHOLDER = re.compile(
    r"^\s*(change[_ -]?me|replace[_ -]?me|todo|fixme|tbd|x{3,}|\.\.\.|your[_ -].*)\s*$"
    r"|change[_-]?me|replace[_-]?me|<[^<>]*>|\$\{[^}]*\}",
    re.IGNORECASE,
)
_EXAMPLE_HOST = re.compile(r"(^|\.)example\.(com|org|net)$", re.IGNORECASE)


# --- field types ------------------------------------------------------------------------------------------


def _port(v: int) -> int:
    if not 0 <= v <= 65535:
        raise ValueError("must be 0-65535 (0 picks a free port)")
    return v


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError("must be greater than 0")
    return v


def _name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{v!r} is not a valid name: use letters, digits, '_' and '-'")
    return v


def _names(v: Any) -> Any:
    """Lists from the environment: JSON (``["a","b"]``) or comma-separated (``a,b``)."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            import json

            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("not a valid JSON list") from None
        return [p.strip() for p in text.split(",") if p.strip()]
    return v


def _plugin_name(v: str) -> str:
    return v if v == "*" else _name(v)


def _url(*schemes: str) -> Any:
    def check(v: str) -> str:
        v = v.strip()
        if v and urlsplit(v).scheme not in schemes:
            raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return v.rstrip("/") if v.startswith("http") else v

    return AfterValidator(check)


Port = Annotated[int, AfterValidator(_port)]
Seconds = Annotated[float, AfterValidator(_positive)]
Name = Annotated[str, AfterValidator(_name)]
PluginNames = Annotated[list[Annotated[str, AfterValidator(_plugin_name)]], NoDecode, BeforeValidator(_names)]


class Section(BaseModel):
    """A config section: unknown keys are refused (typos), values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- sections ---------------------------------------------------------------------------------------------


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
    public_base_url: Annotated[str, _url("http", "https")] = Field(
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
        "local", description='where share-link binaries live: "local" (disk) or "s3" (not supported yet)'
    )
    storage_dir: Path | None = Field(
        None, description="the directory for local binaries (default data_dir/media)"
    )
    s3_endpoint_url: Annotated[str, _url("http", "https")] = Field(
        "", description="the S3-compatible endpoint for storage_backend = s3"
    )
    s3_bucket: str = Field("", description="the bucket for storage_backend = s3")
    link_flow_ttl_s: Seconds = Field(600.0, description="seconds an unfinished account-link flow is kept")
    event_queue_max: int = Field(
        10_000,
        ge=16,
        description="events queued per stream client before it is told to resume from its cursor",
    )


class PluginsSection(Section):
    allow: PluginNames = Field(
        ["loopback", "xmpp", "irc", "matrix"],
        description='entry-point names of connector plugins to load; "*" loads every installed one',
    )
    deny: PluginNames = Field([], description="plugins never loaded, even when allowed")

    def allows(self, name: str) -> bool:
        """Whether the plugin ``name`` may load: listed (or ``*``) in ``allow`` and not in ``deny``."""
        return name not in self.deny and ("*" in self.allow or name in self.allow)


class VaultSection(Section):
    url: Annotated[str, _url("http", "https")] = Field(
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
    url: Annotated[str, _url("redis", "rediss", "unix")] = Field(
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

    @_model_validator(mode="after")
    def _ordered(self) -> OutboundSection:
        if self.max_backoff_s < self.base_backoff_s:
            raise ValueError("max_backoff_s must be at least base_backoff_s")
        return self


class SyncSection(Section):
    interval_s: Seconds = Field(300.0, description="seconds between state syncs of each account")


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
        from .outbound.policy_rules import rules_from_config

        try:
            rules_from_config(self.model_dump())
        except ConfigError as exc:
            raise ValueError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        except (AttributeError, TypeError, KeyError) as exc:
            raise ValueError(f"policy: a table has the wrong shape ({exc})") from None
        return self


# --- the settings model -----------------------------------------------------------------------------------

_file_data: ContextVar[Mapping[str, Any] | None] = ContextVar("msgr_bridge_config_file", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """The parsed TOML file, below the environment in priority."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return copy.deepcopy(dict(_file_data.get() or {}))


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
    networks: dict[Name, dict[str, Any]] = Field(
        default_factory=dict, description="one free-form table per network, passed to its connector"
    )

    _source: Path | None = PrivateAttr(default=None)

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
        if problems:
            raise ValueError("\n".join(problems))
        return self

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


# --- loading ----------------------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    hint = "fix the file (config/example.toml documents every key), or pass another one with --config"
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist",
            hint=f"create it from config/example.toml, or fix --config / ${ENV_CONFIG_PATH}",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory", hint=hint) from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by this user", hint=hint) from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text", hint=hint) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}", hint=hint) from None


def _lookup(data: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or str(part).lower() not in {str(k).lower() for k in node}:
            return False
        node = next(v for k, v in node.items() if str(k).lower() == str(part).lower())
    return True


def _known_keys(loc: tuple[str | int, ...]) -> list[str] | None:
    model: type[BaseModel] = Settings
    for part in loc:
        info = model.model_fields.get(str(part))
        sub = info.annotation if info is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    return sorted(model.model_fields)


def _describe(exc: ValidationError, origin: str, overrides: Mapping[str, Any]) -> ConfigError:
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if p != "[key]")  # a bad dict key: name the key itself
        if not loc and err["type"] == "value_error":
            lines += str(err["ctx"]["error"]).splitlines()
            continue
        key = ".".join(str(p) for p in loc)
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        if err["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            msg = "unknown key (a typo?)" + (f"; known keys: {', '.join(known)}" if known else "")
        env = ENV_PREFIX + "__".join(str(p).upper() for p in loc)
        if _lookup(overrides, loc):
            msg += " (from the command line)"
        elif any(k.upper() == env for k in os.environ):
            msg += f" (from {env})"
        lines.append(f"{key}: {msg}")
    if len(lines) == 1:
        return ConfigError(lines[0], hint=f"fix it in {origin}")
    body = "\n  ".join(lines)
    return ConfigError(f"{len(lines)} configuration problems:\n  {body}", hint=f"fix them in {origin}")


def _check_env_sections() -> None:
    for name in os.environ:
        if name.upper().startswith(ENV_PREFIX):
            section = name[len(ENV_PREFIX) :].split("__")[0].lower()
            if section not in Settings.model_fields:
                raise ConfigError(
                    f"{name}: unknown section {section!r}",
                    hint=f"sections are: {', '.join(Settings.model_fields)}",
                )


def config_path(path: Path | str | None = None) -> Path | None:
    """The file to read: ``path``, else ``$MSGR_BRIDGE_CONFIG``, else ``config/msgr-bridge.toml`` if there."""
    if path is not None:
        return Path(path)
    if os.environ.get(ENV_CONFIG_PATH):
        return Path(os.environ[ENV_CONFIG_PATH])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(path: Path | str | None = None, *, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read, merge and validate the configuration; every problem is one ``ConfigError``.

    ``overrides`` is a nested mapping (``{"api": {"port": 9000}}``) that beats the environment and file.
    Passwords inside database and Redis URLs are registered with the log redactor.
    """
    source = config_path(path)
    data = _read_toml(source) if source is not None else {}
    origin = f"{source} or the {ENV_PREFIX}* environment" if source else f"the {ENV_PREFIX}* environment"
    _check_env_sections()
    token = _file_data.set(data)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as e:
        raise _describe(e, origin, overrides or {}) from None
    except SettingsError as e:
        raise ConfigError(f"environment override: {e}", hint="lists take JSON or commas") from None
    finally:
        _file_data.reset(token)
    settings._source = source
    for url in (settings.database.url, settings.redis.url):
        password = urlsplit(url).password
        if password:
            register_secret(password)
    return settings


# --- rendering --------------------------------------------------------------------------------------------


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _render(value: Any, key: str = "", *, by_key: bool = False) -> Any:
    """Redact URL passwords everywhere, and (in free-form network tables) secret-looking plain values."""
    if isinstance(value, dict):
        return {k: _render(v, str(k), by_key=by_key or k == "networks") for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, key, by_key=by_key) for v in value]
    if isinstance(value, str):
        if by_key and looks_secret(key) and "://" not in value:
            return "***"
        return _redact_url(value) if "://" in value else value
    return value


def effective_config(settings: Settings) -> dict[str, Any]:
    """The settings as plain data for ``msgr-bridge config check``: references shown, secrets never.

    Secret references are shown as written (they are names, not values, and are never resolved here);
    passwords inside URLs become ``***``.
    """
    rendered: dict[str, Any] = _render(settings.model_dump(mode="json"))
    return rendered
