"""The slixmpp side: a client built from the account's typed settings (``config.XmppSettings``), and the
login. slixmpp never reconnects on its own here: retrying is the supervisor's decision."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from slixmpp import JID, ClientXMPP

from msgr_bridge import AuthenticationFailed, BridgeError, TransientError

from .config import XmppSettings

PLUGINS = (
    "xep_0030",  # service discovery
    "xep_0045",  # multi-user chat
    "xep_0085",  # chat states (typing)
    "xep_0184",  # delivery receipts
    "xep_0198",  # stream management (resumption)
    "xep_0199",  # ping
    "xep_0280",  # carbons: what the account sends from other devices
    "xep_0308",  # last message correction
    "xep_0313",  # message archive management
    "xep_0333",  # chat markers
    "xep_0334",  # message processing hints (store / no-store)
    "xep_0359",  # stanza ids
    "xep_0424",  # retraction
    "xep_0444",  # reactions
    "xep_0461",  # replies
)


def make_client(jid: str, password: str, settings: XmppSettings) -> ClientXMPP:
    """A configured (not yet connected) slixmpp client."""
    full = JID(jid)
    if not full.user or not full.domain:
        raise BridgeError(f"not an XMPP account address: {jid!r}", hint="use the form name@example.org")
    plugin_config: dict[str, Any] = {"xep_0184": {"auto_ack": True, "auto_request": False}}
    if settings.security == "plaintext":
        plugin_config["feature_mechanisms"] = {"unencrypted_scram": True, "unencrypted_plain": True}
    client = ClientXMPP(f"{full.bare}/{settings.resource}", password, plugin_config=plugin_config)
    client.enable_direct_tls = settings.security == "direct_tls"
    client.enable_starttls = settings.security == "starttls"
    client.enable_plaintext = settings.security == "plaintext"
    if settings.ca_file:
        client.ca_certs = settings.ca_file
    for name in PLUGINS:
        client.register_plugin(name)
    return client


async def login(client: ClientXMPP, settings: XmppSettings, *, timeout: float = 15.0) -> str:
    """Connect and authenticate; returns ``"started"`` (new session) or ``"resumed"`` (XEP-0198).

    Raises ``AuthenticationFailed`` when the server refuses the credentials and ``TransientError`` when
    it cannot be reached or does not finish the handshake within ``timeout`` seconds. slixmpp's own retry
    loop is cancelled on failure: retrying is the supervisor's decision.
    """
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str] = loop.create_future()

    def settle(result: str | BaseException) -> None:
        if outcome.done():
            return
        if isinstance(result, BaseException):
            outcome.set_exception(result)
        else:
            outcome.set_result(result)

    handlers: dict[str, Callable[[Any], None]] = {
        "session_start": lambda _e: settle("started"),
        "session_resumed": lambda _e: settle("resumed"),
        "failed_auth": lambda _e: settle(
            AuthenticationFailed(
                f"the XMPP server refused the password for {client.boundjid.bare}",
                hint="re-link the account with the current password",
            )
        ),
        "connection_failed": lambda e: settle(
            TransientError(f"cannot reach the XMPP server: {e}", hint="check the server address and port")
        ),
        "disconnected": lambda e: settle(TransientError(f"the XMPP server closed the connection: {e}")),
    }
    for event, handler in handlers.items():
        client.add_event_handler(event, handler)
    try:
        if settings.server and settings.port:
            client.connect(settings.server, settings.port)
        else:
            client.connect()  # the JID domain's SRV records
        return await asyncio.wait_for(outcome, timeout)
    except BaseException as exc:
        client.cancel_connection_attempt()
        client.abort()
        if isinstance(exc, TimeoutError):
            raise TransientError(
                f"the XMPP server did not complete the login within {timeout:.0f}s",
                hint="check 'security' (TLS mode) and 'ca_file' against the server; see the server's log",
            ) from None
        raise
    finally:
        for event, handler in handlers.items():
            client.del_event_handler(event, handler)
