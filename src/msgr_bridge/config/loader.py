"""Loading: find the file, read the TOML, merge the environment and CLI overrides, and turn pydantic's
validation errors into one ``ConfigError`` that names each key and where its bad value came from."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from pydantic_settings.exceptions import SettingsError

from ..errors import ConfigError
from ..observability.logging import register_secret
from .settings import DEFAULT_CONFIG_PATH, ENV_CONFIG_PATH, ENV_PREFIX, Settings, file_data

__all__ = ["config_path", "load_settings"]


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


def bridge_home(config_file: Path) -> Path:
    """Where a config file's relative ``data_dir`` starts: the directory holding ``config/`` for a file in
    a directory named ``config`` (``config/msgr-bridge.toml`` next to ``data/``), else the file's own."""
    folder = config_file.resolve().parent
    return folder.parent if folder.name == "config" else folder


def _anchor_data_dir(data: dict[str, Any], source: Path) -> dict[str, Any]:
    """The file's ``[bridge] data_dir`` (or the default ``data``) made absolute from ``bridge_home``, so
    every command finds the same data whatever directory it is run from."""
    bridge = data.get("bridge")
    if bridge is not None and not isinstance(bridge, dict):
        return data  # refused by validation, with its key
    given = (bridge or {}).get("data_dir", "data")
    if not isinstance(given, str):
        return data
    where = Path(given).expanduser()
    if not where.is_absolute():
        where = bridge_home(source) / where
    return {**data, "bridge": {**(bridge or {}), "data_dir": str(where)}}


def load_settings(path: Path | str | None = None, *, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read, merge and validate the configuration; every problem is one ``ConfigError``.

    ``overrides`` is a nested mapping (``{"api": {"port": 9000}}``) that beats the environment and file.
    Passwords inside database and Redis URLs are registered with the log redactor. A relative
    ``[bridge] data_dir`` from a config file is relative to the file's place (``bridge_home``); one from
    the environment or ``overrides`` is relative to the working directory.
    """
    source = config_path(path)
    data = _anchor_data_dir(_read_toml(source), source) if source is not None else {}
    origin = f"{source} or the {ENV_PREFIX}* environment" if source else f"the {ENV_PREFIX}* environment"
    _check_env_sections()
    token = file_data.set(data)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as e:
        raise _describe(e, origin, overrides or {}) from None
    except SettingsError as e:
        raise ConfigError(f"environment override: {e}", hint="lists take JSON or commas") from None
    finally:
        file_data.reset(token)
    settings._source = source
    for url in (settings.database.url, settings.redis.url):
        password = urlsplit(url).password
        if password:
            register_secret(password)
    return settings
