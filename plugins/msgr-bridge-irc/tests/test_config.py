"""The IRC settings model: the checks the old hand-written parser made, and the account's own pace."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_irc import IrcConnector
from msgr_bridge_irc.config import CAPABILITIES, IrcSettings

from msgr_bridge.errors import ConfigError
from msgr_bridge.sdk.settings import validate_settings
from msgr_bridge.testing.fakes import make_context


def settings(**values: Any) -> IrcSettings:
    given = {"host": "irc.example.net", "nick": "bridge", **values}
    model = validate_settings(IrcSettings, given, network="irc")
    assert isinstance(model, IrcSettings)
    return model


def test_defaults_follow_other_settings() -> None:
    assert settings().port == 6697 and settings(tls="false").port == 6667
    assert settings(tls=False, port="7000").port == 7000
    assert settings().realname == "bridge" and settings(realname="Bridge Bot").realname == "Bridge Bot"
    assert settings(channels="#a, &b,").channels == ["#a", "&b"]
    assert settings(nickserv="OFF").nickserv == "off"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"nick": "9lives"}, "nick"),
        ({"nick": "a b"}, "nick"),
        ({"host": "irc.example.net/x"}, "host"),
        ({"channels": ["lobby"]}, "channels"),
        ({"port": 70000}, "port"),
        ({"nickserv": "maybe"}, "nickserv"),
        ({"flood_rate": 0}, "flood_rate"),
        ({"server": "irc.example.net"}, "server"),  # the old example's key: not a setting
    ],
)
def test_bad_settings_name_the_key(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[networks.irc\] {named}"):
        settings(**values)


def test_the_core_limiter_follows_the_accounts_flood_settings() -> None:
    def connector(**values: Any) -> IrcConnector:
        base = {"host": "irc.example.net", "nick": "bridge", **values}
        return IrcConnector(make_context("irc", settings=base))

    default = connector().conversation_capabilities("irc.example.net/#a")
    assert (default.rate_limit_per_s, default.rate_limit_burst) == (2.0, 3) and default == CAPABILITIES
    fast = connector(flood_rate=20, flood_burst=20)
    caps = fast.conversation_capabilities("irc.example.net/#a")
    assert (caps.rate_limit_per_s, caps.rate_limit_burst) == (20.0, 20)
    assert caps.model_copy(update={"rate_limit_per_s": 2.0, "rate_limit_burst": 3}) == CAPABILITIES
    slow = connector(flood_rate="0.5").conversation_capabilities("irc.example.net/#a")
    assert slow.rate_limit_per_s == 0.5
