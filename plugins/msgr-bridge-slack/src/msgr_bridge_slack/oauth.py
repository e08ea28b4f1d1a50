"""Linking through Slack's OAuth v2 consent page, with the operator's app (``flow = "oauth"``).

The operator configures the app once in ``[networks.slack]``: ``oauth_client_id``, ``oauth_client_secret``
and ``app_token`` (``env://`` references only: a link request must never make the bridge read a local
file), and ``public_base_url``. The flow's first step is the consent URL; Slack then sends the browser to
``<public_base_url>/v1/links/slack/oauth``. The core has no route there yet, so the person pastes the
address the browser shows (or just its ``code``) into the form; the code is exchanged with
``oauth.v2.access`` for the person's user token (``xoxp-``), checked with ``auth.test``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from msgr_bridge import FormField, LinkStep, LinkStepKind, NotSupported
from msgr_bridge.credentials.refs import resolve
from msgr_bridge.errors import AuthenticationFailed, SecretReferenceError

from .client import api_error
from .config import SECRET_APP_TOKEN, SECRET_TOKEN

AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
USER_SCOPES = (
    "channels:history,groups:history,im:history,mpim:history,channels:read,groups:read,im:read,mpim:read,"
    "users:read,chat:write,reactions:read,reactions:write,channels:write,groups:write,im:write,mpim:write,"
    "files:read,files:write"
)
NEEDED = ("oauth_client_id", "oauth_client_secret", "app_token", "public_base_url")


async def _env_secret(defaults: Mapping[str, Any], key: str) -> str:
    value = str(defaults.get(key) or "")
    if not value.startswith("env://"):
        raise NotSupported(
            "the Slack OAuth flow",
            network="slack",
            hint=f"[networks.slack] {key} must be an env:// reference",
        )
    try:
        return await resolve(value)
    except SecretReferenceError as exc:
        raise NotSupported("the Slack OAuth flow", network="slack", hint=exc.message) from None


class OAuthStart:
    """The OAuth half of ``SlackLinkFlow``: the consent step, then the code for a token."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        missing = [k for k in NEEDED if not defaults.get(k)]
        if missing:
            raise NotSupported(
                "the Slack OAuth flow",
                network="slack",
                hint=f"the operator must set {', '.join(missing)} in [networks.slack]",
            )
        self.defaults = defaults
        self.state = secrets.token_urlsafe(16)
        self.redirect_uri = str(defaults["public_base_url"]).rstrip("/") + "/v1/links/slack/oauth"

    def step(self, prompt: str = "") -> LinkStep:
        query = urlencode(
            {
                "client_id": self.defaults["oauth_client_id"],
                "user_scope": USER_SCOPES,
                "redirect_uri": self.redirect_uri,
                "state": self.state,
            }
        )
        url = f"{self.defaults.get('oauth_authorize_url') or AUTHORIZE_URL}?{query}"
        field = FormField(name="redirect_url", label="The address your browser shows after you approve")
        text = prompt or "Approve the bridge in Slack, then paste the address Slack sent your browser to"
        return LinkStep(kind=LinkStepKind.OAUTH_URL, prompt=text, url=url, fields=(field,))

    def code_of(self, answer: str) -> str | None:
        """The code in a pasted redirect address (its ``state`` must be ours), or a bare code."""
        if "://" not in answer:
            return answer or None
        query = parse_qs(urlsplit(answer).query)
        if query.get("state", [""])[0] != self.state:
            return None
        if "error" in query:
            raise AuthenticationFailed(f"Slack did not approve the bridge ({query['error'][0]})")
        return query.get("code", [""])[0] or None

    async def exchange(self, api_url: str, code: str) -> dict[str, str]:
        """``oauth.v2.access``: the person's user token and the operator's app token, as secrets."""
        client_secret = await _env_secret(self.defaults, "oauth_client_secret")
        app_token = await _env_secret(self.defaults, "app_token")
        web = AsyncWebClient(base_url=api_url)
        try:
            # credentials in the body, as Slack allows (slack_sdk's oauth_v2_access uses deprecated BasicAuth)
            form = {
                "client_id": str(self.defaults["oauth_client_id"]),
                "client_secret": client_secret,
                "code": code,
                "redirect_uri": self.redirect_uri,
            }
            answer = await web.api_call("oauth.v2.access", data=form)
        except SlackApiError as exc:
            if exc.response.get("error") in ("invalid_code", "bad_redirect_uri"):
                raise AuthenticationFailed(f"Slack refused the code ({exc.response['error']})") from None
            raise api_error("oauth.v2.access", exc) from None
        token = (answer.get("authed_user") or {}).get("access_token")
        if not isinstance(token, str) or not token.startswith("xoxp-"):
            raise AuthenticationFailed("Slack's answer carried no user token (is user_scope set on the app?)")
        return {SECRET_TOKEN: token, SECRET_APP_TOKEN: app_token}
