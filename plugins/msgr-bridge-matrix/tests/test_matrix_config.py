"""The Matrix settings model, the link form built from it, and light registration (no Synapse needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from msgr_bridge_matrix import DESCRIPTION, MatrixSettings

from msgr_bridge.errors import ConfigError
from msgr_bridge.sdk.settings import form_fields, validate_settings


def valid(**values: Any) -> MatrixSettings:
    settings = validate_settings(
        MatrixSettings, {"homeserver": "https://matrix.example.org", **values}, network="matrix"
    )
    assert isinstance(settings, MatrixSettings)
    return settings


def test_defaults_and_form_answers_as_strings() -> None:
    settings = valid()
    assert (settings.timeline_limit, settings.max_backfill) == (50, 1000)
    assert settings.auto_join_from == [] and settings.auto_join_invites is True
    answered = valid(timeline_limit="7", auto_join_invites="no", auto_join_from="@a:x.org, *:y.org *")
    assert answered.timeline_limit == 7 and answered.auto_join_invites is False
    assert answered.auto_join_from == ["@a:x.org", "*:y.org", "*"]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"homeserver": "matrix.example.org"}, "homeserver"),
        ({"homeserver": "file:///etc/passwd"}, "homeserver"),
        ({"timeline_limit": 0}, "timeline_limit"),
        ({"timeline_limit": "many"}, "timeline_limit"),
        ({"max_backfill": 10**9}, "max_backfill"),
        ({"auto_join_from": ["alice"]}, "auto_join_from"),
        ({"auto_join_from": 5}, "auto_join_from"),
        ({"auto_join_invites": "sometimes"}, "auto_join_invites"),
        ({"server": "https://matrix.example.org"}, "server"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(values: dict[str, Any], named: str) -> None:
    # the old connector read timeline_limit 0 or "many" as 50 without a word, and took any key
    with pytest.raises(ConfigError) as caught:
        valid(**values)
    assert f"[networks.matrix] {named}" in caught.value.message


def test_a_missing_homeserver_is_named() -> None:
    with pytest.raises(ConfigError, match="homeserver"):
        validate_settings(MatrixSettings, {}, network="matrix")


def test_the_link_form_is_typed_from_the_model() -> None:
    fields = {f.name: f for f in form_fields(MatrixSettings, defaults={"auto_join_from": ["*"]})}
    assert fields["timeline_limit"].type == "integer" and fields["timeline_limit"].default == 50
    assert fields["auto_join_invites"].type == "boolean"
    assert fields["auto_join_from"].type == "list" and fields["auto_join_from"].default == ("*",)
    assert fields["homeserver"].required and fields["homeserver"].help


PROBE = textwrap.dedent(
    """
    import json, sys
    from msgr_bridge.plugins import PluginManager
    from msgr_bridge.testing.fakes import make_context

    def heavy():
        return sorted(m for m in sys.modules if m == "mautrix" or m == "msgr_bridge_matrix.connector")

    seen = {}
    registry = PluginManager().load()
    cls = registry.connectors["matrix"]
    seen["registered"] = heavy()
    seen["model"] = cls.settings_model.__name__
    seen["reactions"] = cls.capabilities.reactions
    connector = cls(make_context("matrix", settings={"homeserver": "https://matrix.example.org"}))
    seen["account_started"] = heavy()
    seen["instance"] = type(connector).__module__ + "." + type(connector).__name__
    print(json.dumps(seen))
    """
)


def test_mautrix_loads_only_when_an_account_starts() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["registered"] == [] and seen["model"] == "MatrixSettings" and seen["reactions"] is True
    assert seen["account_started"] == ["mautrix", "msgr_bridge_matrix.connector"]
    assert seen["instance"] == "msgr_bridge_matrix.connector.MatrixConnector"
    assert DESCRIPTION.problem() is None
