"""Linking a Matrix account: the settings form plus a password or an access token, verified by logging in.

The form is the settings model (``config.MatrixSettings``: homeserver, user id, the sync and invite
settings) plus a password or an existing access token. A password login creates a device named
``msgr-bridge``; its access token and device id are stored as secrets (with the password, so the connector
can log in again if the token is ever revoked). An access token is checked with ``whoami`` and stored as
given. The client used to check is closed before the flow ends (``self.probe``). The account keeps the
homeserver, the user id and the settings answered differently from the defaults, so later changes to
``[networks.matrix]`` still reach it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge.connectors.protocol import FormField, LinkResult
from msgr_bridge.errors import AuthenticationFailed
from msgr_bridge.sdk.linking import SettingsLinkFlow

from . import client as wire
from .config import MatrixSettings


class MatrixLinkFlow(SettingsLinkFlow):
    settings_model = MatrixSettings
    network = "matrix"
    prompt = "Sign in to your Matrix account (give a password, or an access token from your client)."
    secret_fields = (
        FormField(name="password", label="Password", secret=True, required=False),
        FormField(name="access_token", label="Access token", secret=True, required=False),
    )

    async def verify(
        self, settings: MatrixSettings, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        user = (settings.user_id or "").strip()
        password = secrets.get("password", "")
        token = secrets.get("access_token", "").strip()
        if not token and not (user and password):
            raise AuthenticationFailed("give a user id and password, or an access token")
        client = wire.make_client(settings.homeserver)
        self.probe(lambda: wire.close_client(client))
        if token:
            session = await wire.login_token(client, token)
        else:
            session = await wire.login_password(client, user, password)
        kept = {"homeserver": settings.homeserver, "user_id": session.user_id}
        for name, value in settings.model_dump(mode="json").items():
            info = MatrixSettings.model_fields[name]
            default = self.defaults.get(name, info.get_default(call_default_factory=True))
            if name not in kept and value != default:
                kept[name] = value
        stored = {"access_token": session.access_token, "device_id": session.device_id}
        if password:
            stored["password"] = password
        return LinkResult(
            remote_user_id=session.user_id, display_name=session.user_id, settings=kept, secrets=stored
        )
