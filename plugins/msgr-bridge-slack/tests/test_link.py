"""Linking against the fake Slack: both ways, corrections, refusals, and the OAuth flow that is not there."""

from __future__ import annotations

import aiohttp
import pytest
from msgr_bridge_slack import SlackConnector
from slack_world import Slack

from msgr_bridge.connectors.protocol import LinkResult, LinkStep, LinkStepKind
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


def oauth_settings(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    slack.fake.register_app("cid-1", "the-client-secret")
    monkeypatch.setenv("TEST_SLACK_CLIENT_SECRET", "the-client-secret")
    monkeypatch.setenv("TEST_SLACK_APP_TOKEN", slack.app_token.value)
    return {
        "flow": "oauth",
        "api_url": slack.fake.base_url,
        "oauth_client_id": "cid-1",
        "oauth_client_secret": "env://TEST_SLACK_CLIENT_SECRET",
        "app_token": "env://TEST_SLACK_APP_TOKEN",
        "public_base_url": "https://bridge.example/",
        "oauth_authorize_url": slack.fake.url + "oauth/v2/authorize",
    }


async def consent(url: str) -> str:
    """What a browser does at Slack's consent page: follow it to the redirect address."""
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False) as r:
        assert r.status == 302
        return r.headers["Location"]


async def test_oauth_redirect_flow(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> None:
    slack.fake.approver = slack.me.id
    flow = SlackConnector.link_flow(oauth_settings(slack, monkeypatch))
    step = await flow.start()
    assert step.kind == LinkStepKind.OAUTH_URL and step.url and "user_scope=" in step.url
    redirected = await consent(step.url)
    assert redirected.startswith("https://bridge.example/v1/links/slack/oauth?code=")
    again = await flow.submit({"redirect_url": redirected.replace("state=", "state=x")})  # not ours
    assert isinstance(again, LinkStep) and "paste the whole address" in again.prompt
    result = await flow.submit({"redirect_url": redirected})
    assert isinstance(result, LinkResult) and result.remote_user_id == slack.me.id
    assert (
        result.secrets["token"].startswith("xoxp-") and result.secrets["app_token"] == slack.app_token.value
    )
    connector = slack.connector()
    await connector.ctx.secrets.put("token", result.secrets["token"])
    await connector.connect()
    await connector.disconnect()
    with pytest.raises(AuthenticationFailed, match="invalid_code"):  # a code works once
        await _reuse(slack, monkeypatch, redirected)


async def _reuse(slack: Slack, monkeypatch: pytest.MonkeyPatch, redirected: str) -> None:
    flow = SlackConnector.link_flow(oauth_settings(slack, monkeypatch))
    await flow.start()
    code = redirected.split("code=")[1].split("&")[0]
    await flow.submit({"redirect_url": code})


async def test_oauth_denied_and_misconfigured(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = oauth_settings(slack, monkeypatch)
    flow = SlackConnector.link_flow(settings)
    denied = await consent((await flow.start()).url or "")  # nobody approves
    with pytest.raises(AuthenticationFailed, match="access_denied"):
        await flow.submit({"redirect_url": denied})
    with pytest.raises(NotSupported, match="oauth_client_id"):
        await SlackConnector.link_flow({"flow": "oauth"}).start()
    local_file = {**settings, "oauth_client_secret": "file:///etc/hostname"}
    slack.fake.approver = slack.me.id
    flow = SlackConnector.link_flow(local_file)
    redirected = await consent((await flow.start()).url or "")
    with pytest.raises(NotSupported, match="env://"):  # a link never makes the bridge read a local file
        await flow.submit({"redirect_url": redirected})
