"""Linking an IRC account: one credentials form, verified by logging in to the server once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge import FormField, LinkResult, LinkStep, LinkStepKind

from .client import IrcSession
from .config import SECRET_PASSWORD, SECRET_SERVER_PASSWORD, IrcSettings

FIELDS = (
    FormField(name="host", label="Server host"),
    FormField(name="port", label="Port", required=False, default="6697"),
    FormField(name="tls", label="Use TLS (true/false)", required=False, default="true"),
    FormField(name="nick", label="Nick"),
    FormField(name="realname", label="Real name", required=False),
    FormField(name="channels", label="Channels to join (comma-separated)", required=False),
    FormField(name=SECRET_SERVER_PASSWORD, label="Server password", secret=True, required=False),
    FormField(name=SECRET_PASSWORD, label="Account password (SASL or NickServ)", secret=True, required=False),
)


class IrcLinkFlow:
    """``start()`` shows the form; ``submit()`` logs in once (refused credentials raise
    ``AuthenticationFailed``) and returns the settings and secrets to store."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)

    async def start(self) -> LinkStep:
        fields = tuple(
            f.model_copy(update={"default": str(self.defaults[f.name])}) if f.name in self.defaults else f
            for f in FIELDS
            if not f.secret
        ) + tuple(f for f in FIELDS if f.secret)
        return LinkStep(kind=LinkStepKind.CREDENTIALS_FORM, prompt="Connect to an IRC server", fields=fields)

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        merged: dict[str, Any] = {**self.defaults, **{k: v for k, v in answers.items() if v != ""}}
        secrets = {
            key: str(merged.pop(key)) for key in (SECRET_SERVER_PASSWORD, SECRET_PASSWORD) if merged.get(key)
        }
        settings = IrcSettings.from_mapping(merged)
        session = IrcSession(
            settings,
            server_password=secrets.get(SECRET_SERVER_PASSWORD),
            password=secrets.get(SECRET_PASSWORD),
        )
        try:
            await session.open()
        finally:
            await session.close("msgr-bridge link check")
        return LinkResult(
            remote_user_id=f"{settings.host.lower()}/{session.fold(settings.nick)}",
            display_name=settings.nick,
            settings=settings.as_dict(),
            secrets=secrets,
        )

    async def cancel(self) -> None:
        return None
