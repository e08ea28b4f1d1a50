"""Settings: file + environment + overrides, secret references, placeholders, typos, and clear errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from msgr_bridge.config import Settings, effective_config, load_settings
from msgr_bridge.config.sections import DEFAULT_ALLOWED, SHIPPED_CONNECTORS, TEST_CONNECTORS
from msgr_bridge.credentials.refs import SecretRef
from msgr_bridge.errors import ConfigError
from msgr_bridge.observability.logging import _forget_registered_secrets, redact

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example.toml"

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory with no MSGR_BRIDGE* variables, whatever the outer environment holds."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problem(text: str, **kw: Any) -> ConfigError:
    path = write(Path("bad.toml"), text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, **kw)
    return info.value


# --- sources and their priority ---------------------------------------------------------------------------


def test_defaults_without_any_file() -> None:
    s = load_settings()
    assert s.source_path is None
    assert s.bridge.tenant == "default"
    assert s.bridge.data_dir == Path("data")
    assert s.database.url == "sqlite+aiosqlite:///data/msgr-bridge.db"
    assert s.credentials.keystore_path == Path("data/keystore.json")
    assert s.credentials.key_file == Path("data/keystore.key")
    assert s.credentials.keystore_key == SecretRef("env", "MSGR_BRIDGE_KEYSTORE_KEY")
    assert (s.api.host, s.api.port, s.api.public_base_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert s.plugins.allow == list(DEFAULT_ALLOWED) and s.redis.url == ""


def test_every_shipped_connector_plugin_but_the_test_network_is_allowed_by_default() -> None:
    shipped = {p.name.removeprefix("msgr-bridge-") for p in (ROOT / "plugins").iterdir() if p.is_dir()}
    assert shipped == set(SHIPPED_CONNECTORS)
    assert set(DEFAULT_ALLOWED) == shipped - {"loopback"} and TEST_CONNECTORS == ("loopback",)
    s = load_settings()
    assert not s.plugins.allows("loopback") and s.plugins.allows("irc")


def test_default_file_then_env_file_then_explicit_path(monkeypatch: pytest.MonkeyPatch) -> None:
    write(Path("config/msgr-bridge.toml"), "[api]\nport = 8001\n")
    assert load_settings().api.port == 8001
    assert load_settings().source_path == Path("config/msgr-bridge.toml")
    monkeypatch.setenv("MSGR_BRIDGE_CONFIG", str(write(Path("env.toml"), "[api]\nport = 8002\n")))
    assert load_settings().api.port == 8002
    assert load_settings(write(Path("cli.toml"), "[api]\nport = 8003\n")).api.port == 8003


def test_environment_beats_the_file_and_overrides_beat_both(monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(Path("c.toml"), '[api]\nport = 8001\nhost = "127.0.0.2"\n[bridge]\ntenant = "acme"\n')
    monkeypatch.setenv("MSGR_BRIDGE__API__PORT", "9000")
    monkeypatch.setenv("msgr_bridge__credentials__vault__kv_mount", "kv")  # case does not matter
    s = load_settings(path)
    assert (s.api.port, s.api.host, s.bridge.tenant) == (9000, "127.0.0.2", "acme")
    assert s.credentials.vault.kv_mount == "kv"
    s = load_settings(path, overrides={"api": {"port": 9100}})
    assert (s.api.port, s.api.host) == (9100, "127.0.0.2")


@pytest.mark.parametrize("value", ["loopback,irc", ' ["loopback", "irc"] '])
def test_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MSGR_BRIDGE__PLUGINS__ALLOW", value)
    assert load_settings().plugins.allow == ["loopback", "irc"]


def test_network_tables_from_file_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(Path("c.toml"), '[networks.irc]\nserver = "irc.libera.chat"\nport = 6697\n')
    monkeypatch.setenv("MSGR_BRIDGE__NETWORKS__IRC__NICK", "bridgebot")
    monkeypatch.setenv("MSGR_BRIDGE__NETWORKS__IRC__PASSWORD", "env://IRC_PASSWORD")
    s = load_settings(path)
    assert s.networks["irc"] == {
        "server": "irc.libera.chat",
        "port": 6697,
        "nick": "bridgebot",
        "password": "env://IRC_PASSWORD",
    }


def test_the_example_config_loads_and_matches_the_defaults() -> None:
    s = load_settings(EXAMPLE)  # its data_dir "./data" is relative to the file's place: the repository
    defaults = effective_config(load_settings(overrides={"bridge": {"data_dir": str(ROOT / "data")}}))
    assert effective_config(s) == {**defaults, "networks": {"loopback": {}}}


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += _keys(sub, f"{prefix}{name}.")
        elif name not in ("networks", "flags"):  # tables of tables, documented as commented examples
            out.append(f"{prefix}{name}")
    return out


def test_every_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    sections = re.findall(r"^\[([a-z_.]+)\]", text, re.MULTILINE)
    missing = []
    for key in _keys(Settings):
        section, _, name = key.rpartition(".")
        assert section in sections, f"[{section}] is missing from config/example.toml"
        body = re.split(rf"^\[{re.escape(section)}\]$", text, maxsplit=1, flags=re.MULTILINE)[1]
        body = body.split("\n[", 1)[0]
        if not re.search(rf"^#? ?{name} = ", body, re.MULTILINE):
            missing.append(key)
    assert missing == []
    assert "# [networks.<name>]" in text and "# [flags.teams]" in text


def test_file_values_get_their_types() -> None:
    path = write(
        Path("c.toml"),
        """
[bridge]
data_dir = "/var/lib/msgr"
[database]
url = "postgresql+asyncpg://msgr@db.internal/msgr"
[api]
host = "::1"
[logging]
level = "DEBUG"
format = "json"
[credentials]
backend = "vault"
keystore_key = "file:///run/secrets/ks"
[credentials.vault]
url = "https://vault.internal:8200/"
auth = "approle"
role_id = "r-123"
secret_id = "vault://secret/bootstrap#secret_id"
""",
    )
    s = load_settings(path)
    assert s.credentials.keystore_path == Path("/var/lib/msgr/keystore.json")
    assert s.database.url == "postgresql+asyncpg://msgr@db.internal/msgr"
    assert s.api.public_base_url == "http://[::1]:8080"
    assert s.logging.level == "debug"
    assert s.credentials.vault.url == "https://vault.internal:8200"
    assert s.credentials.vault.secret_id == SecretRef("vault", "secret/bootstrap", "secret_id")
    assert s.credentials.keystore_key == SecretRef("file", "/run/secrets/ks")


def test_plugin_allow_and_deny() -> None:
    s = load_settings(write(Path("c.toml"), '[plugins]\nallow = ["*"]\ndeny = ["irc"]\n'))
    assert s.plugins.allows("loopback") and s.plugins.allows("xmpp") and not s.plugins.allows("irc")
    assert load_settings().plugins.allows("irc") and not load_settings().plugins.allows("somebody-elses")


# --- refusals ---------------------------------------------------------------------------------------------


def test_malformed_toml_names_the_line() -> None:
    e = problem('[bridge]\ntenant = "acme"\n\n[api\nport = 1\n')
    assert "not valid TOML" in e.message and "line 4" in e.message and "bad.toml" in e.message


def test_missing_and_unreadable_files() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings("nowhere.toml")
    Path("adir").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings("adir")
    Path("latin1.toml").write_bytes(b'[bridge]\ntenant = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_settings("latin1.toml")


def test_out_of_range_port_names_the_key() -> None:
    assert problem("[api]\nport = 70000\n").message == "api.port: must be 0-65535 (0 picks a free port)"


def test_typos_are_refused_with_the_known_keys() -> None:
    e = problem("[api]\nprot = 8080\n")
    assert e.message.startswith("api.prot: unknown key")
    assert "port" in e.message and "host" in e.message
    assert problem("[apii]\nport = 1\n").message.startswith("apii: unknown key")
    assert problem('[credentials.vault]\nurll = "x"\n').message.startswith("credentials.vault.urll: unknown")


def test_bad_environment_overrides_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSGR_BRIDGE__API__PORT", "eighty")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.message.startswith("api.port: ")
    assert "MSGR_BRIDGE__API__PORT" in info.value.message


def test_unknown_environment_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSGR_BRIDGE__APY__PORT", "9000")
    with pytest.raises(ConfigError, match="MSGR_BRIDGE__APY__PORT: unknown section"):
        load_settings()


def test_unknown_key_in_an_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSGR_BRIDGE__API__PROT", "9000")
    with pytest.raises(ConfigError, match=r"api\.prot: unknown key"):
        load_settings()


def test_several_problems_are_reported_together() -> None:
    e = problem('[api]\nport = -1\nmax_body_bytes = 1\n[logging]\nlevel = "loud"\n')
    assert e.message.startswith("3 configuration problems")
    for key in ("api.port", "api.max_body_bytes", "logging.level"):
        assert f"\n  {key}: " in e.message
    assert "bad.toml" in (e.hint or "")


def test_plain_secrets_are_refused_without_being_repeated() -> None:
    e = problem('[credentials.vault]\ntoken = "hvs.S3cr3tToken"\n')
    assert e.message.startswith("credentials.vault.token: ")
    assert "env://NAME" in e.message
    assert "hvs.S3cr3tToken" not in str(e)


def test_plain_secrets_in_network_tables_are_refused() -> None:
    e = problem('[networks.irc]\nserver = "irc.libera.chat"\npassword = "hunter2-plain"\n')
    assert e.message.startswith("networks.irc.password: a plain secret is not allowed")
    assert "hunter2-plain" not in str(e)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[bridge]\ntenant = "CHANGE_ME"\n', "bridge.tenant"),  # not even a valid name, still a placeholder
        ('[api]\nhost = "<your host>"\n', "api.host"),
        ('[database]\nurl = "postgresql+asyncpg://changeme@db/x"\n', "database.url"),
        ('[credentials.vault]\nrole_id = "xxx"\n', "credentials.vault.role_id"),
        ('[credentials.vault]\nnamespace = "TODO"\n', "credentials.vault.namespace"),
        ('[credentials]\nkeystore_key = "env://CHANGE_ME"\n', "credentials.keystore_key"),
        ('[networks.irc]\nnick = "${NICK}"\n', "networks.irc.nick"),
        ('[api]\npublic_base_url = "https://bridge.example.com"\n', "api.public_base_url"),
        ('[redis]\nurl = "redis://cache.example.org:6379"\n', "redis.url"),
    ],
)
def test_placeholders_are_refused_with_what_to_put_there(toml: str, key: str) -> None:
    e = problem(toml)
    assert f"{key}: " in e.message
    assert "placeholder" in e.message or "example host" in e.message
    assert "there" in e.message or "set the value" in e.message


def test_the_vault_backend_needs_its_settings() -> None:
    e = problem('[credentials]\nbackend = "vault"\n')
    assert "credentials.vault.url: required when backend = vault" in e.message
    e = problem(
        '[credentials]\nbackend = "vault"\n'
        '[credentials.vault]\nurl = "https://vault.internal"\nauth = "approle"\n'
    )
    assert "credentials.vault: auth = approle needs role_id and secret_id" in e.message
    e = problem('[credentials.vault]\nurl = "https://vault.example.com"\n')
    assert "credentials.vault.url: vault.example.com is an example host" in e.message


@pytest.mark.parametrize(
    ("toml", "start"),
    [
        ('[bridge]\ntenant = "acme corp"\n', "bridge.tenant: "),
        ("[bridge]\nshutdown_timeout_s = 0\n", "bridge.shutdown_timeout_s: must be greater than 0"),
        ("[outbound]\nbase_backoff_s = 10\nmax_backoff_s = 5\n", "outbound: max_backoff_s must be at least"),
        ('[api]\npublic_base_url = "ftp://x"\n', "api.public_base_url: must be a URL starting with http"),
        ('[redis]\nurl = "http://127.0.0.1"\n', "redis.url: must be a URL starting with redis://"),
        ('[plugins]\nallow = ["good", "bad name"]\n', "plugins.allow.1: "),
        ('[networks."bad.name"]\nx = 1\n', "networks.bad.name: 'bad.name' is not a valid name"),
        ('[logging]\nformat = "xml"\n', "logging.format: "),
        ('[credentials]\nbackend = "s3"\n', "credentials.backend: "),
    ],
)
def test_bad_values_name_their_key(toml: str, start: str) -> None:
    assert problem(toml).message.startswith(start)


# --- rendering --------------------------------------------------------------------------------------------


def test_effective_config_shows_references_and_hides_passwords() -> None:
    path = write(
        Path("c.toml"),
        """
[database]
url = "postgresql+asyncpg://msgr:db-pa55word@db.internal:5432/msgr"
[redis]
url = "redis://:redis-pa55word@127.0.0.1:6379/0"
[credentials.vault]
token = "file:///run/secrets/vault_token"
[networks.irc]
password = "env://IRC_PASSWORD"
server = "irc.libera.chat"
""",
    )
    try:
        s = load_settings(path)
        rendered = effective_config(s)
        text = json.dumps(rendered)
        assert "db-pa55word" not in text and "redis-pa55word" not in text
        assert rendered["database"]["url"] == "postgresql+asyncpg://msgr:***@db.internal:5432/msgr"
        assert rendered["redis"]["url"] == "redis://:***@127.0.0.1:6379/0"
        assert rendered["credentials"]["vault"]["token"] == "file:///run/secrets/vault_token"
        assert rendered["credentials"]["keystore_key"] == "env://MSGR_BRIDGE_KEYSTORE_KEY"
        assert rendered["networks"]["irc"] == {"password": "env://IRC_PASSWORD", "server": "irc.libera.chat"}
        # the settings themselves keep the real URL, and its password is now masked in any log line
        assert "db-pa55word" in s.database.url
        assert redact(f"connecting to {s.database.url}") == (
            "connecting to postgresql+asyncpg://msgr:***@db.internal:5432/msgr"
        )
    finally:
        _forget_registered_secrets()
