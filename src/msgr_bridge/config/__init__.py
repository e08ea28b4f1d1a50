"""Typed settings: one TOML file, environment overrides, secret references, and refusal of placeholders.

Where the settings come from, strongest first:

1. ``overrides`` given by the CLI (``msgr-bridge run --host/--port``);
2. environment variables ``MSGR_BRIDGE__SECTION__KEY`` (``MSGR_BRIDGE__API__PORT=9000``,
   ``MSGR_BRIDGE__CREDENTIALS__VAULT__URL=...``, ``MSGR_BRIDGE__NETWORKS__IRC__SERVER=...``); lists take
   JSON or commas (``MSGR_BRIDGE__PLUGINS__ALLOW=loopback,irc``);
3. the TOML file: ``--config PATH``, else ``$MSGR_BRIDGE_CONFIG``, else ``config/msgr-bridge.toml`` in the
   working directory when it exists;
4. built-in defaults (``config/example.toml`` documents every key and its default).

Relative paths are relative to the working directory, but for ``[bridge] data_dir`` from a config file:
that one (default ``data``) is relative to the file's place (``loader.bridge_home``: the directory holding
``config/`` for ``config/msgr-bridge.toml``, else the file's directory), so every command finds the same
state from any directory. ``msgr-bridge --data-dir DIR`` or ``MSGR_BRIDGE__BRIDGE__DATA_DIR`` name it too.
Secrets are never written in the file: a ``SecretRef`` field takes
``env://NAME``, ``file://PATH`` or ``vault://PATH#KEY``, and so must any secret-looking key (``password``,
``token``, ...) in a ``[networks.<name>]`` table. Unknown keys are refused (they are usually typos), and so
are placeholders such as ``CHANGE_ME``, ``<your token>`` or an ``example.com`` address. Every problem is a
``ConfigError`` naming the key path (``api.port: must be 0-65535 ...``) and where the bad value came from.

The package, by what each module holds: ``fields`` (field types: ports, durations, names, URL checks),
``sections`` (one model per TOML table), ``settings`` (``Settings``: sources, derived defaults and the
cross-section checks), ``loader`` (``load_settings`` and its error messages) and ``render``
(``effective_config``).
"""

from __future__ import annotations

from .fields import Name, PluginNames, Port, Seconds
from .loader import config_path, load_settings
from .render import effective_config
from .sections import (
    ApiSection,
    BridgeSection,
    CredentialsSection,
    DatabaseSection,
    LoggingSection,
    OutboundSection,
    PluginsSection,
    PolicySection,
    RedisSection,
    Section,
    SyncSection,
    VaultSection,
)
from .settings import DEFAULT_CONFIG_PATH, ENV_CONFIG_PATH, ENV_PREFIX, Settings

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_CONFIG_PATH",
    "ENV_PREFIX",
    "ApiSection",
    "BridgeSection",
    "CredentialsSection",
    "DatabaseSection",
    "LoggingSection",
    "Name",
    "OutboundSection",
    "PluginNames",
    "PluginsSection",
    "PolicySection",
    "Port",
    "RedisSection",
    "Seconds",
    "Section",
    "Settings",
    "SyncSection",
    "VaultSection",
    "config_path",
    "effective_config",
    "load_settings",
]
