"""Linking a loopback account: the settings form plus user id and password, checked by logging in once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge import FormField, LinkResult
from msgr_bridge.sdk.linking import SettingsLinkFlow

from .config import LoopbackSettings
from .network import LoopbackNetwork


class LoopbackLinkFlow(SettingsLinkFlow):
    settings_model = LoopbackSettings
    network = "loopback"
    prompt = "Log in to a loopback network"
    identity_fields = (FormField(name="user_id", label="User id"),)
    secret_fields = (FormField(name="password", label="Password", secret=True),)

    async def verify(
        self, settings: LoopbackSettings, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        user_id, password = str(identity.get("user_id") or ""), secrets.get("password", "")
        if settings.url is not None:
            from .remote import RemoteClient  # the client library: loaded only for a remote network

            client = RemoteClient(settings.url)
            self.probe(client.close)  # closed before the flow ends, whatever login does
            await client.login(user_id, password)
            name = None
        else:
            network = LoopbackNetwork.get(settings.network)
            network.check_fault("link")
            network.authenticate(user_id, password)
            name = network.users.get(user_id)
        return LinkResult(
            remote_user_id=user_id,
            display_name=name,
            settings=settings.model_dump(mode="json", exclude_none=True),
            secrets={"password": password},
        )
