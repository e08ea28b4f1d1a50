"""Linking an XMPP account: the JID, the password and the account's own settings (rooms, nick), checked
by one login. Where to connect (``server``, ``port``, ``security``, ``ca_file``) and the rest are
operator-only (``[networks.xmpp]``): the form leaves them out and a link request or answer naming one is
refused. The password is stored as the account secret ``password``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slixmpp import JID
from slixmpp.jid import InvalidJID

from msgr_bridge import FormField, LinkResult
from msgr_bridge.errors import ConfigError
from msgr_bridge.sdk.linking import SettingsLinkFlow

from .client import login, make_client
from .config import XmppSettings


class XmppLinkFlow(SettingsLinkFlow):
    settings_model = XmppSettings
    network = "xmpp"
    prompt = "Sign in to your XMPP account; the bridge logs in once to check the password."
    identity_fields = (FormField(name="jid", label="XMPP address (name@example.org)"),)
    secret_fields = (FormField(name="password", label="Password", secret=True),)

    async def verify(
        self, settings: XmppSettings, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        raw_jid, password = str(identity.get("jid") or "").strip(), secrets.get("password", "")
        try:
            jid = JID(raw_jid)
        except InvalidJID:
            jid = JID()
        if not jid.user or not jid.domain or not password:
            raise ConfigError(
                f"not a usable XMPP address and password: {raw_jid!r}",
                hint="enter an address like name@example.org and its password",
            )
        client = make_client(jid.bare, password, settings)

        async def close() -> None:  # awaited before the account's real session starts
            if client.transport is not None:
                await client.disconnect(wait=2.0)

        self.probe(close)
        await login(client, settings)  # AuthenticationFailed / TransientError: the person answers again
        return LinkResult(
            remote_user_id=jid.bare,
            display_name=jid.bare,
            settings=settings.model_dump(mode="json", exclude_unset=True),
            secrets={"password": password},
        )


__all__ = ["XmppLinkFlow"]
