"""Typed settings: form fields from a model, validation that names the bad key, the ``[networks.<name>]``
check (``msgr-bridge config check``), and config/example.toml against every installed connector's model."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from msgr_bridge.errors import ConfigError
from msgr_bridge.plugins import PluginManager
from msgr_bridge.sdk.settings import check_network_tables, coerce, form_fields, validate_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"


class IrcLike(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(description="server host name")
    port: int = Field(6697, ge=1, le=65535)
    tls: bool = True
    flood_rate: float = 2.0
    channels: list[str] = Field(default_factory=list, description="channels to join")
    realname: str | None = None
    mode: Literal["auto", "off"] = "auto"


class Connector:
    settings_model = IrcLike


def test_form_fields_carry_types_defaults_and_help() -> None:
    fields = {f.name: f for f in form_fields(IrcLike, defaults={"port": 7000, "password": "env://X"})}
    assert [(n, f.type) for n, f in fields.items()] == [
        ("host", "string"),
        ("port", "integer"),
        ("tls", "boolean"),
        ("flood_rate", "number"),
        ("channels", "list"),
        ("realname", "string"),
        ("mode", "string"),
    ]
    assert fields["host"].required and fields["host"].help == "server host name"
    assert fields["port"].default == 7000 and not fields["port"].required  # the operator's default wins
    assert fields["tls"].default is True and fields["channels"].default == ()
    assert "password" not in fields  # a secret is never a setting


def test_validation_takes_strings_numbers_and_booleans_and_names_bad_keys() -> None:
    typed = validate_settings(IrcLike, {"host": "h", "port": "6667", "tls": "false"}, network="irc")
    assert isinstance(typed, IrcLike) and (typed.port, typed.tls) == (6667, False)
    typed = validate_settings(
        IrcLike, {"host": "h", "port": 6667, "tls": False, "channels": "#a, #b"}, network="irc"
    )
    assert isinstance(typed, IrcLike) and typed.channels == ["#a", "#b"]
    with pytest.raises(ConfigError) as info:
        validate_settings(IrcLike, {"server": "h", "port": 0}, network="irc")
    text = info.value.explain()
    assert "[networks.irc] server: Extra inputs are not permitted" in text
    assert "[networks.irc] host: Field required" in text and "[networks.irc] port" in text
    assert "host, port" in (info.value.hint or "")
    assert coerce(IrcLike, {"realname": ""}) == {}  # an empty answer to an optional field: the default


def test_network_tables_are_checked_against_the_model_as_defaults() -> None:
    problems, notes = check_network_tables(
        {
            "irc": {"server": "irc.libera.chat", "port": 6697, "password": "env://IRC_PASSWORD"},
            "xmpp": {"anything": 1},
        },
        {"irc": Connector, "xmpp": object()},
    )
    assert len(problems) == 1 and "[networks.irc] server" in problems[0]
    assert notes == ["[networks.xmpp]: the connector declares no settings model; not checked"]
    # a table may leave a required setting (host) to each account's link answers
    assert check_network_tables({"irc": {"port": 6697, "tls": True}}, {"irc": Connector}) == ([], [])


def example_network_tables(text: str) -> dict[str, dict[str, object]]:
    """Every ``[networks.<name>]`` table of the example, the commented-out ones uncommented."""
    lines = []
    inside = False
    for line in text.splitlines():
        header = re.match(r"^#?\s*\[([\w.<>-]+)\](?:\s+\(.*\))?\s*$", line)  # "(see ...)" may follow
        if header:
            inside = header.group(1).startswith("networks.") and header.group(1) != "networks.<name>"
            lines.append(f"[{header.group(1)}]" if inside else "")
            continue
        if inside:
            setting = re.match(r"^#?\s*([A-Za-z_][\w]*\s*=.*)$", line)
            lines.append(re.sub(r"\s+#.*$", "", setting.group(1)) if setting else "")
    return dict(tomllib.loads("\n".join(lines)).get("networks", {}))


def test_the_example_network_tables_match_the_installed_connectors() -> None:
    tables = example_network_tables(EXAMPLE.read_text())
    assert {"loopback", "irc", "xmpp"} <= set(tables)
    assert tables["irc"]["host"] == "irc.libera.chat" and tables["loopback"]["history_page"] == 5000
    registry = PluginManager().load()
    problems, _notes = check_network_tables(tables, registry.connectors)
    assert problems == []
    assert "loopback" in registry.connectors  # at least the loopback table was checked against a model
