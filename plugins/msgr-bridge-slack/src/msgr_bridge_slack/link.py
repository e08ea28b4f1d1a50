"""Linking a Slack account: a token pasted in a form, checked with ``auth.test`` before anything is stored.

Two ways, one form:

* an OAuth **user token** (``xoxp-``) of a Slack app the operator registered, with the app's **app-level
  token** (``xapp-``, scope ``connections:write``) for Socket Mode: events reach user tokens only through
  an app's Socket Mode connection, so the app token is required with ``xoxp-``;
* a **browser session**: the ``xoxc-`` token and the ``d`` cookie of a logged-in Slack web client, read
  through RTM. Not an official API surface: see docs/networks/slack.md for the terms-of-service risk.

A refused token raises ``AuthenticationFailed``; a form with a wrong or missing field is shown again with
what was wrong in its prompt (nothing is lost: the other answers come back as defaults). The OAuth redirect
flow through ``public_base_url`` is in ``oauth.py`` (start a link with ``{"flow": "oauth"}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge import FormField, LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import AuthenticationFailed, ConfigError

from .client import SlackWeb
from .config import SECRET_APP_TOKEN, SECRET_COOKIE, SECRET_TOKEN, SlackSettings, token_kind
from .oauth import OAuthStart

FIELDS = (
    FormField(
        name=SECRET_TOKEN, label="User token (xoxp-...) or browser session token (xoxc-...)", secret=True
    ),
    FormField(
        name=SECRET_APP_TOKEN,
        label="App-level token (xapp-..., needed with xoxp-)",
        secret=True,
        required=False,
    ),
    FormField(
        name=SECRET_COOKIE,
        label="Browser 'd' cookie (xoxd-..., needed with xoxc-)",
        secret=True,
        required=False,
    ),
)


def _problem(secrets: Mapping[str, str]) -> str | None:
    """What is wrong with the pasted tokens before asking Slack, or None."""
    kind = token_kind(secrets.get(SECRET_TOKEN, ""))
    if kind not in ("user", "session"):
        return "the token must be a user token (xoxp-...) or a browser session token (xoxc-...)"
    if kind == "user" and token_kind(secrets.get(SECRET_APP_TOKEN, "")) != "app":
        return "a user token (xoxp-) needs the app's app-level token (xapp-) for Socket Mode"
    if kind == "session" and not secrets.get(SECRET_COOKIE, "").startswith("xoxd-"):
        return "a browser session token (xoxc-) needs the browser's 'd' cookie (xoxd-...)"
    return None


class SlackLinkFlow:
    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.answers: dict[str, str] = {}
        self.oauth: OAuthStart | None = None

    async def start(self) -> LinkStep:
        if str(self.defaults.get("flow", "")).lower() == "oauth":
            self.oauth = OAuthStart(self.defaults)
            return self.oauth.step()
        return self._form("Link a Slack workspace account")

    def _form(self, prompt: str) -> LinkStep:
        known = {**{k: str(v) for k, v in self.defaults.items()}, **self.answers}
        fields = tuple(
            f.model_copy(update={"default": known[f.name]}) if f.name in known and not f.secret else f
            for f in FIELDS
        )
        return LinkStep(kind=LinkStepKind.CREDENTIALS_FORM, prompt=prompt, fields=fields)

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        if self.oauth is not None:
            return await self._oauth(answers)
        wanted = {f.name for f in FIELDS}  # the API URL is the operator's ([networks.slack]), never an answer
        self.answers.update({k: v.strip() for k, v in answers.items() if k in wanted and v.strip()})
        secrets = {
            k: self.answers[k] for k in (SECRET_TOKEN, SECRET_APP_TOKEN, SECRET_COOKIE) if k in self.answers
        }
        problem = _problem(secrets)
        if problem is not None:
            return self._form(f"Please correct: {problem}")
        try:
            settings = SlackSettings.from_mapping({**self.defaults, **self.answers})
        except ConfigError as exc:
            return self._form(f"Please correct: {exc.message}")
        if token_kind(secrets[SECRET_TOKEN]) == "user":
            secrets.pop(SECRET_COOKIE, None)
        return await self._finish(settings, secrets)

    async def _oauth(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        assert self.oauth is not None
        code = self.oauth.code_of(str(answers.get("redirect_url") or "").strip())
        if code is None:
            return self.oauth.step("That is not Slack's answer to this link: paste the whole address")
        settings = SlackSettings.from_mapping(self.defaults)
        return await self._finish(settings, await self.oauth.exchange(settings.api_url, code))

    async def _finish(self, settings: SlackSettings, secrets: dict[str, str]) -> LinkResult:
        """Check the tokens with Slack (auth.test; the app token opens a Socket Mode URL): who is it?"""
        web = SlackWeb(settings, secrets[SECRET_TOKEN], secrets.get(SECRET_COOKIE))
        try:
            me = await web.call("auth.test")
            if SECRET_APP_TOKEN in secrets:
                app = SlackWeb(settings, secrets[SECRET_APP_TOKEN])
                try:
                    await app.call("apps.connections.open")  # the app token works (the URL is not used)
                finally:
                    await app.close()
        finally:
            await web.close()
        user_id, team_id = str(me.get("user_id") or ""), str(me.get("team_id") or "")
        if not user_id or not team_id:
            raise AuthenticationFailed("Slack's auth.test did not say who the token belongs to")
        stored = settings.model_copy(update={"user_id": user_id, "team_id": team_id}).stored()
        return LinkResult(
            remote_user_id=user_id,
            display_name=str(me.get("user") or user_id),
            settings=stored,
            secrets=secrets,
        )

    async def cancel(self) -> None:
        return None
