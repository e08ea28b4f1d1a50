"""Linking a Matrix account: a credentials form, verified by logging in once.

The form asks for the homeserver URL, the user id, and either a password or an existing access token.
A password login creates a device named ``msgr-bridge``; its access token and device id are stored as
secrets (with the password, so the connector can log in again if the token is ever revoked). An access
token is checked with ``whoami`` and stored as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge.connectors.protocol import FormField, LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import AuthenticationFailed

from . import client as wire


class MatrixLinkFlow:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    async def start(self) -> LinkStep:
        default_hs = self.settings.get("homeserver")
        return LinkStep(
            kind=LinkStepKind.CREDENTIALS_FORM,
            prompt="Sign in to your Matrix account (give a password, or an access token from your client).",
            fields=(
                FormField(
                    name="homeserver",
                    label="Homeserver URL",
                    default=default_hs if isinstance(default_hs, str) else None,
                ),
                FormField(name="user_id", label="User ID (@user:server)"),
                FormField(name="password", label="Password", secret=True, required=False),
                FormField(name="access_token", label="Access token", secret=True, required=False),
            ),
        )

    async def submit(self, answers: Mapping[str, str]) -> LinkResult:
        homeserver = (answers.get("homeserver") or self.settings.get("homeserver") or "").strip()
        user = (answers.get("user_id") or "").strip()
        password = answers.get("password") or ""
        token = (answers.get("access_token") or "").strip()
        if not homeserver:
            raise AuthenticationFailed("no homeserver URL given", hint="enter your homeserver's URL")
        if not token and not (user and password):
            raise AuthenticationFailed("give a user id and password, or an access token")
        client = wire.make_client(homeserver)
        try:
            if token:
                session = await wire.login_token(client, token)
            else:
                session = await wire.login_password(client, user, password)
        finally:
            await wire.close_client(client)
        secrets = {"access_token": session.access_token, "device_id": session.device_id}
        if password:
            secrets["password"] = password
        return LinkResult(
            remote_user_id=session.user_id,
            display_name=session.user_id,
            settings={"homeserver": homeserver, "user_id": session.user_id},
            secrets=secrets,
        )

    async def cancel(self) -> None:
        return None
