"""Linking against the fake Slack: both ways, corrections, refusals, and the OAuth flow that is not there."""

from __future__ import annotations

import pytest
from msgr_bridge_slack import SlackConnector
from slack_world import Slack

from msgr_bridge.connectors.protocol import LinkResult, LinkStep
from msgr_bridge.errors import AuthenticationFailed, NotSupported


async def test_session_token_link_and_what_is_stored(slack: Slack) -> None:
    flow = SlackConnector.link_flow({"api_url": slack.fake.base_url})
    await flow.start()
    result = await flow.submit(
        {
            "token": slack.session_token.value,
            "cookie_d": slack.session_token.cookie or "",
            "api_url": "http://169.254.169.254/",
        }
    )
    assert isinstance(result, LinkResult) and result.remote_user_id == slack.me.id
    assert result.settings == {
        "api_url": slack.fake.base_url,
        "team_id": "T0FAKE0001",
        "user_id": slack.me.id,
    }
    assert set(result.secrets) == {"token", "cookie_d"}  # an answered api_url is not taken


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ({"token": "hello"}, "xoxp-"),
        ({"token": "xoxc-1-x"}, "'d' cookie"),
        ({"token": "xoxp-1-x", "app_token": "xoxb-1"}, "xapp-"),
    ],
)
async def test_a_wrong_form_is_shown_again(slack: Slack, answers: dict[str, str], problem: str) -> None:
    step = await SlackConnector.link_flow({"api_url": slack.fake.base_url}).submit(answers)
    assert isinstance(step, LinkStep) and problem in step.prompt
    assert slack.fake.requests == []  # nothing was sent to Slack


async def test_refused_tokens(slack: Slack) -> None:
    bad_app = {"token": slack.user_token.value, "app_token": "xapp-1-bogus"}
    with pytest.raises(AuthenticationFailed, match="invalid_auth"):
        await SlackConnector.link_flow({"api_url": slack.fake.base_url}).submit(bad_app)
    bad_cookie = {"token": slack.session_token.value, "cookie_d": "xoxd-stolen"}
    with pytest.raises(AuthenticationFailed):
        await SlackConnector.link_flow({"api_url": slack.fake.base_url}).submit(bad_cookie)


async def test_the_oauth_redirect_flow_is_not_supported_yet() -> None:
    with pytest.raises(NotSupported, match="OAuth"):
        await SlackConnector.link_flow({"flow": "oauth"}).start()
