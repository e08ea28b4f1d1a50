"""Feature flags: cohorts, the stable percentage, and names checked when the config loads."""

from __future__ import annotations

import pytest

from msgr_bridge.config import load_settings
from msgr_bridge.errors import ConfigError
from msgr_bridge.flags import FeatureDisabled, FeatureFlags, FlagRule, bucket


def test_a_flag_without_a_cohort_is_on_and_enabled_false_is_off_for_everyone() -> None:
    assert FlagRule().on_for("teams", "t", "u")
    assert not FlagRule(enabled=False, users=("u",)).on_for("teams", "t", "u")


def test_tenants_users_and_percentage_are_cohorts_any_of_which_admits() -> None:
    rule = FlagRule(tenants=("pilot",), users=("alice",), percentage=0)
    assert rule.on_for("teams", "pilot", "zed")
    assert rule.on_for("teams", "other", "alice")
    assert not rule.on_for("teams", "other", "bob")
    assert not rule.on_for("teams", "other", None)


def test_the_percentage_is_stable_and_grows_without_dropping_anyone() -> None:
    users = [f"user{i}" for i in range(2000)]
    at = {p: {u for u in users if FlagRule(percentage=p).on_for("teams", "t", u)} for p in (10, 50, 100)}
    assert at[10] <= at[50] <= at[100] == set(users)
    assert 100 < len(at[10]) < 300  # about 10 % of 2,000
    assert bucket("teams", "t", "user1") == bucket("teams", "t", "user1")
    # another flag puts people elsewhere: the same users are not always the first to get everything
    assert {u for u in users if bucket("discord", "t", u) < 10} != at[10]


def test_capability_flags_name_the_flag_that_refused() -> None:
    flags = FeatureFlags({"*.reactions": FlagRule(users=("alice",)), "irc.edits": FlagRule(enabled=False)})
    flags.check_capabilities("irc", ["reactions"], "t", "alice")
    with pytest.raises(FeatureDisabled) as err:
        flags.check_capabilities("irc", ["reactions"], "t", "bob")
    assert err.value.flag == "*.reactions" and "reactions on irc" in str(err.value)
    with pytest.raises(FeatureDisabled) as err:
        flags.check_capabilities("irc", ["edits"], "t", "alice")
    assert err.value.flag == "irc.edits"
    flags.check_capabilities("matrix", ["edits"], "t", "alice")


def test_flag_names_are_checked_when_the_config_loads() -> None:
    settings = load_settings(
        overrides={"flags": {"teams": {"percentage": 5}, "*.reactions": {"users": ["a"]}}}
    )
    assert settings.flags["teams"].percentage == 5
    with pytest.raises(ConfigError) as err:
        load_settings(overrides={"flags": {"teams.reaction": {"users": ["a"]}}})
    assert "'reaction' is not a capability" in str(err.value)
    with pytest.raises(ConfigError):
        load_settings(overrides={"flags": {"teams": {"percentage": 150}}})
    with pytest.raises(ConfigError):
        load_settings(overrides={"flags": {"teams": {"percent": 5}}})  # a typo is not silently ignored
