"""The slixmpp side: building a client from account settings, and capturing stanzas as JSON payloads.

Account settings (non-secret, chosen at link time):

``server`` / ``port``
    Where to connect. Without them slixmpp resolves the JID domain's SRV records (the normal case).
``security``
    ``starttls`` (default: plain connection upgraded to TLS, certificate verified), ``direct_tls``
    (XEP-0368 port, TLS from the first byte) or ``plaintext`` (no TLS at all: only for a test server on
    loopback; passwords travel in the clear). Anything else is refused.
``ca_file``
    A CA bundle to trust instead of the system store (self-signed test servers).
``rooms``
    Room JIDs (MUC) to join; ``nick`` is the nickname there (default: the JID's local part).
``resource``
    The resource of the bridge's session (default ``msgr-bridge``).
``ping_interval`` / ``ping_timeout``
    Seconds between keepalive pings (default 60) and how long to wait for the answer (default 20) before
    the connection counts as lost.
``id_flush_interval``
    Seconds between writes of newly remembered message ids to the state store (default 5; see
    ``idstore.py``).
``read_queue``
    Stanzas read ahead of the sink at most (default 1024); while that many wait, the socket is not read
    (``msgr_bridge.sdk.reader``), so a flood during a slow pipeline is held back by TCP, not by memory.
``reaction_sets``
    How many reaction sets (one per message and sender) to remember for computing per-emoji changes
    (default 8192; see ``reactions.py``). Older ones are forgotten.

Capture reads the stanza's XML directly (namespaces below), so a payload depends only on what was on the
wire, not on which slixmpp plugins happened to be loaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container, Mapping
from typing import Any
from xml.etree.ElementTree import Element

from slixmpp import JID, ClientXMPP

from msgr_bridge import AuthenticationFailed, BridgeError, TransientError
from msgr_bridge.errors import ConfigError

from .convert import PAYLOAD_VERSION
from .moderation import InvalidModeration
from .moderation import parse as parse_moderation
from .muc import NS_OCCUPANT_ID

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
SECURITY = ("starttls", "direct_tls", "plaintext")

NS_CLIENT = "jabber:client"
NS_CORRECT = "urn:xmpp:message-correct:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_REACTIONS = "urn:xmpp:reactions:0"
NS_MARKERS = "urn:xmpp:chat-markers:0"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_SID = "urn:xmpp:sid:0"
NS_DELAY = "urn:xmpp:delay"
NS_OOB = "jabber:x:oob"
NS_REPLY = "urn:xmpp:reply:0"
NS_FALLBACK = "urn:xmpp:fallback:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MAM = "urn:xmpp:mam:2"


def make_client(jid: str, password: str, settings: Mapping[str, Any]) -> ClientXMPP:
    """A configured (not yet connected) slixmpp client. Never reconnects by itself: the supervisor does."""
    security = settings.get("security", "starttls")
    if security not in SECURITY:
        raise ConfigError(
            f"unknown xmpp security mode {security!r}",
            hint=f"set the account's 'security' setting to one of {', '.join(SECURITY)}",
        )
    resource = str(settings.get("resource") or "msgr-bridge")
    full = JID(jid)
    if not full.user or not full.domain:
        raise BridgeError(f"not an XMPP account address: {jid!r}", hint="use the form name@example.org")
    plugin_config: dict[str, Any] = {"xep_0184": {"auto_ack": True, "auto_request": False}}
    if security == "plaintext":
        plugin_config["feature_mechanisms"] = {"unencrypted_scram": True, "unencrypted_plain": True}
    client = ClientXMPP(f"{full.bare}/{resource}", password, plugin_config=plugin_config)
    client.enable_direct_tls = security == "direct_tls"
    client.enable_starttls = security == "starttls"
    client.enable_plaintext = security == "plaintext"
    if settings.get("ca_file"):
        client.ca_certs = str(settings["ca_file"])
    for name in PLUGINS:
        client.register_plugin(name)
    return client


def room_list(settings: Mapping[str, Any]) -> list[str]:
    """The ``rooms`` setting as bare room JIDs (a list, or one comma-separated string)."""
    raw = settings.get("rooms") or []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    rooms = []
    for item in items:
        jid = JID(str(item).strip())
        if not jid.user or jid.resource:
            raise ConfigError(
                f"not a room address: {item!r}", hint="rooms look like room@conference.example.org"
            )
        rooms.append(str(jid.bare))
    return rooms


def connect_address(settings: Mapping[str, Any]) -> tuple[str | None, int | None]:
    server, port = settings.get("server"), settings.get("port")
    if server and port:
        return str(server), int(port)
    return None, None


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _child_attr(xml: Element, ns: str, tag: str, attr: str = "id") -> str | None:
    el = xml.find(_q(ns, tag))
    return el.get(attr) if el is not None else None


def body_without_reply_fallback(xml: Element) -> str | None:
    """The body without the quote a reply carries for clients without XEP-0461 (XEP-0428 ranges).

    The canonical message has ``reply_to`` instead; ranges count code points, as Python strings do.
    """
    body = xml.findtext(_q(NS_CLIENT, "body"))
    if body is None or xml.find(_q(NS_REPLY, "reply")) is None:
        return body
    cuts: list[tuple[int, int]] = []
    for fallback in xml.findall(_q(NS_FALLBACK, "fallback")):
        if fallback.get("for") != NS_REPLY:
            continue
        for part in fallback.findall(_q(NS_FALLBACK, "body")):
            raw = (part.get("start"), part.get("end"))
            if raw == (None, None):
                return ""  # the whole body is fallback
            if all((r or "").isdigit() for r in raw):
                cuts.append((int(raw[0] or 0), min(int(raw[1] or 0), len(body))))
    for start, end in sorted(cuts, reverse=True):
        if start < end:
            body = body[:start] + body[end:]
    return body


def unwrap_carbon(xml: Element) -> tuple[Element, bool] | None:
    """The forwarded message of a carbon and whether it was sent by us; None when it is not a carbon."""
    for kind in ("sent", "received"):
        inner = xml.find(f"{_q(NS_CARBONS, kind)}/{_q(NS_FORWARD, 'forwarded')}/{_q(NS_CLIENT, 'message')}")
        if inner is not None:
            return inner, kind == "sent"
    return None


def is_archive_result(xml: Element) -> bool:
    return xml.find(_q(NS_MAM, "result")) is not None


def capture(
    xml: Element,
    *,
    own_bare: str,
    room_nicks: Mapping[str, str],
    sent_by_self: bool | None = None,
    archive_id: str | None = None,
    stamp: str | None = None,
    occupant_id_rooms: Container[str] = (),
) -> dict[str, Any] | None:
    """A JSON-compatible payload for one message stanza, or None for stanzas the bridge ignores.

    ``room_nicks`` maps joined room JIDs to our nick there (to recognise reflections of our own
    messages). ``archive_id`` and ``stamp`` come from a MAM result wrapping the stanza. A moderation
    (XEP-0425) that must not be applied is captured as ``"moderated": {"error": <why>}``, for the
    connector to log and drop (capture itself stays pure). The sender's occupant-id (XEP-0421) is kept
    only from an occupant of a room in ``occupant_id_rooms`` (rooms that advertise it, and so replace
    any the sender wrote): anywhere else it could be forged.
    """
    mtype = xml.get("type") or "normal"
    if mtype == "error":
        return None
    sender = JID(xml.get("from") or "")
    if mtype == "groupchat":
        nick = room_nicks.get(sender.bare)
        is_self = bool(nick) and sender.resource == nick
    else:
        is_self = sender.bare == own_bare if sent_by_self is None else sent_by_self
    peer = JID(xml.get("to") or "") if is_self else sender
    private = mtype != "groupchat" and peer.bare in room_nicks  # a private message inside a room
    delay = xml.find(_q(NS_DELAY, "delay"))
    stanza_id = archive_id
    if stanza_id is None:
        expected_by = sender.bare if mtype == "groupchat" else own_bare
        for sid in xml.findall(_q(NS_SID, "stanza-id")):
            if sid.get("by") == expected_by:
                stanza_id = sid.get("id")
    occupant_id = None
    if sender.resource and sender.bare in occupant_id_rooms:
        occupant_id = _child_attr(xml, NS_OCCUPANT_ID, "occupant-id") or None
    reactions = xml.find(_q(NS_REACTIONS, "reactions"))
    marker = next(
        (
            {"kind": kind, "id": mark.get("id") or ""}
            for kind in ("displayed", "acknowledged", "received")
            if (mark := xml.find(_q(NS_MARKERS, kind))) is not None
        ),
        None,
    )
    chat_state = next(
        (child.tag.rpartition("}")[2] for child in xml if child.tag.startswith(f"{{{NS_CHATSTATES}}}")), None
    )
    moderated: dict[str, str | None] | None
    try:
        moderated = parse_moderation(xml, room_nicks)
    except InvalidModeration as exc:
        moderated = {"error": str(exc)}
    oob = [
        {"url": (x.findtext(_q(NS_OOB, "url")) or "").strip(), "desc": x.findtext(_q(NS_OOB, "desc"))}
        for x in xml.findall(_q(NS_OOB, "x"))
        if (x.findtext(_q(NS_OOB, "url")) or "").strip()
    ]
    return {
        "v": PAYLOAD_VERSION,
        "type": mtype,
        "from": str(sender),
        "to": xml.get("to"),
        "id": _child_attr(xml, NS_SID, "origin-id") or xml.get("id"),
        "stanza_id": stanza_id,
        "self": is_self,
        "timestamp": stamp or (delay.get("stamp") if delay is not None else None),
        "body": body_without_reply_fallback(xml),
        "subject": xml.findtext(_q(NS_CLIENT, "subject")),
        "replace": _child_attr(xml, NS_CORRECT, "replace"),
        "retract": _child_attr(xml, NS_RETRACT, "retract"),
        "reactions": None
        if reactions is None
        else {
            "id": reactions.get("id") or "",
            "values": [r.text for r in reactions.findall(_q(NS_REACTIONS, "reaction")) if r.text],
        },
        "marker": marker,
        "receipt": _child_attr(xml, NS_RECEIPTS, "received"),
        "chat_state": chat_state,
        "oob": oob,
        "reply_to": _child_attr(xml, NS_REPLY, "reply"),
        "private": private,
        "moderated": moderated,
        "occupant_id": occupant_id,
    }


async def login(client: ClientXMPP, settings: Mapping[str, Any], *, timeout: float = 15.0) -> str:
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
    host, port = connect_address(settings)
    try:
        client.connect(host, port)
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
