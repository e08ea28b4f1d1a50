"""``msgr_bridge.sdk.hooks``: names, URLs and bounds of connectors' HTTP callbacks."""

from __future__ import annotations

import pytest

from msgr_bridge.errors import BridgeError
from msgr_bridge.sdk.hooks import MAX_HOOKS, HookRegistry, HookRequest, HookResponse, Hooks, link_callback_url


async def _handler(request: HookRequest) -> HookResponse:
    return HookResponse()


def test_urls_name_the_network_account_and_hook() -> None:
    hooks = HookRegistry("https://bridge.example.org/").for_account("teams", "acct_1")
    assert hooks.register("notify", _handler) == "https://bridge.example.org/hooks/teams/acct_1/notify"
    assert (
        link_callback_url("https://b.example.org/", "teams")
        == "https://b.example.org/hooks/teams/link-callback"
    )


def test_without_a_public_url_register_returns_none() -> None:
    assert Hooks().register("notify", _handler) is None


@pytest.mark.parametrize("name", ["", "UPPER", "a/b", "../x", "x" * 33])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(BridgeError):
        Hooks("https://b.example.org", "teams", "a").register(name, _handler)


def test_an_account_registers_a_bounded_number_of_hooks() -> None:
    hooks = Hooks("https://b.example.org", "teams", "a")
    for i in range(MAX_HOOKS):
        hooks.register(f"h{i}", _handler)
    hooks.register("h0", _handler)  # replacing is fine
    with pytest.raises(BridgeError):
        hooks.register("one-more", _handler)


def test_the_registry_finds_only_the_accounts_network() -> None:
    registry = HookRegistry("https://b.example.org")
    hooks = registry.for_account("teams", "a")
    assert registry.find("teams", "a") is hooks
    assert registry.find("slack", "a") is None and registry.find("teams", "b") is None
    registry.drop("a")
    assert registry.find("teams", "a") is None


def test_secret_matches_compares_strings_only() -> None:
    assert HookRequest.secret_matches("s", "s")
    assert not HookRequest.secret_matches("s", "t")
    assert not HookRequest.secret_matches("s", None)
    assert not HookRequest.secret_matches("", "")
