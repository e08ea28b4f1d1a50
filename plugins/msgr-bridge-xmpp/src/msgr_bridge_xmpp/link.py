"""Linking an XMPP account: a credentials form (JID, password, optional rooms), verified by one login.

``settings`` given to the flow are the operator's defaults for the network (``server``, ``port``,
``security``, ``ca_file``); they are copied into the account's settings together with the rooms and
nick entered here. The password goes to the credential layer as the secret ``password``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slixmpp import JID
from slixmpp.jid import InvalidJID

from msgr_bridge import FormField, LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import ConfigError

from .client import login, make_client

FIELDS = (
    FormField(name="jid", label="XMPP address (name@example.org)"),
    FormField(name="password", label="Password", secret=True),
    FormField(name="rooms", label="Group chats to join (room JIDs, comma separated)", required=False),
    FormField(name="nick", label="Nickname in group chats", required=False),
)


class XmppLinkFlow:
    """One live link session (kept in memory by the API between the two steps)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.defaults = dict(settings)

    async def start(self) -> LinkStep:
        return LinkStep(
            kind=LinkStepKind.CREDENTIALS_FORM,
            prompt="Sign in to your XMPP account; the bridge logs in once to check the password.",
            fields=FIELDS,
        )

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        raw_jid = (answers.get("jid") or "").strip()
        password = answers.get("password") or ""
        try:
            jid = JID(raw_jid)
        except InvalidJID:
            jid = JID()
        if not jid.user or not jid.domain or not password:
            raise ConfigError(
                f"not a usable XMPP address and password: {raw_jid!r}",
                hint="enter an address like name@example.org and its password",
            )
        rooms = [r.strip() for r in (answers.get("rooms") or "").split(",") if r.strip()]
        for room in rooms:
            try:
                ok = bool(JID(room).user) and not JID(room).resource
            except InvalidJID:
                ok = False
            if not ok:
                raise ConfigError(
                    f"not a room address: {room!r}", hint="rooms look like room@conference.example.org"
                )
        settings: dict[str, Any] = {**self.defaults, "rooms": [JID(r).bare for r in rooms]}
        if answers.get("nick"):
            settings["nick"] = answers["nick"].strip()
        client = make_client(jid.bare, password, settings)
        await login(client, settings)  # AuthenticationFailed / TransientError go to the caller
        await client.disconnect(wait=2.0)
        return LinkResult(
            remote_user_id=jid.bare, display_name=jid.bare, settings=settings, secrets={"password": password}
        )

    async def cancel(self) -> None:
        return None


__all__ = ["FIELDS", "XmppLinkFlow"]
