"""Linking a Discord bot: the operator creates the bot and gives its token; one form, checked over REST.

Only bot accounts are offered. Automating a user account ("self-bot") breaks Discord's Terms of Service
and gets the account disabled, so the bridge never asks for a user token or a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge import FormField, LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import ConfigError

from .client import DiscordRest
from .config import SECRET_TOKEN, DiscordSettings

FIELDS = (
    FormField(name="person_name", label="Name your messages are shown under", required=False),
    FormField(name="person_avatar_url", label="Avatar URL for your messages", required=False),
    FormField(
        name=SECRET_TOKEN, label="Bot token (Developer Portal > your app > Bot > Reset Token)", secret=True
    ),
)


class DiscordLinkFlow:
    """``start()`` shows the form; ``submit()`` checks the token with ``GET /users/@me`` (a refused token
    raises ``AuthenticationFailed``, and the person can submit again) and returns what to store."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)

    async def start(self) -> LinkStep:
        prompt = (
            "Link a Discord bot you created in the Developer Portal and invited to your servers. "
            "Switch on the Message Content and Server Members intents there."
        )
        return LinkStep(kind=LinkStepKind.CREDENTIALS_FORM, prompt=prompt, fields=FIELDS)

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        merged: dict[str, Any] = {**self.defaults, **{k: v for k, v in answers.items() if v}}
        token = str(merged.pop(SECRET_TOKEN, "")).strip().removeprefix("Bot ")
        settings = DiscordSettings.from_mapping(merged)
        if not token:
            raise ConfigError("the bot token is required", hint="paste the token of the bot you created")
        rest = DiscordRest(settings.api_base, token, timeout_s=settings.timeout_s)
        try:
            me = await rest.me()
        finally:
            await rest.close()
        return LinkResult(
            remote_user_id=str(me["id"]),
            display_name=str(me.get("global_name") or me.get("username") or me["id"]),
            settings=settings.as_dict(),
            secrets={SECRET_TOKEN: token},
        )

    async def cancel(self) -> None:
        return None
