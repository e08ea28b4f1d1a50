"""Linking an IRC account: the settings form plus the passwords, verified by logging in to the server once.

The test connection is a probe: before the flow ends it sends ``QUIT`` and waits until the server has
closed the link, so the account's real connection finds its nick free (a server that suspends a new client
for a moment, as most do, would otherwise still hold it and the real connection would get ``nick_``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge import FormField, LinkResult, LinkStep
from msgr_bridge.sdk.linking import SettingsLinkFlow

from .client import IrcSession
from .config import CONNECTION_FIELDS, SECRET_PASSWORD, SECRET_SERVER_PASSWORD, IrcSettings


class IrcLinkFlow(SettingsLinkFlow):
    settings_model = IrcSettings
    network = "irc"
    prompt = "Connect to an IRC server"
    secret_fields = (
        FormField(name=SECRET_SERVER_PASSWORD, label="Server password", secret=True, required=False),
        FormField(
            name=SECRET_PASSWORD, label="Account password (SASL or NickServ)", secret=True, required=False
        ),
    )

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        super().__init__(defaults)
        self._answered: set[str] = set()

    async def submit(self, answers: Mapping[str, Any]) -> LinkStep | LinkResult:
        self._answered = {k for k, v in answers.items() if v not in (None, "")}
        return await super().submit(answers)

    async def verify(
        self, settings: IrcSettings, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        session = IrcSession(
            settings,
            server_password=secrets.get(SECRET_SERVER_PASSWORD),
            password=secrets.get(SECRET_PASSWORD),
        )
        self.probe(lambda: session.close("msgr-bridge link check", wait_s=min(settings.timeout, 10.0)))
        await session.open()
        # the connection's settings, and what the person chose; the rest follows [networks.irc]
        stored = {*CONNECTION_FIELDS, *(self._answered & set(IrcSettings.model_fields))}
        return LinkResult(
            remote_user_id=f"{settings.host.lower()}/{session.fold(settings.nick)}",
            display_name=settings.nick,
            settings=settings.model_dump(mode="json", include=stored),
            secrets=dict(secrets),
        )
