"""The slixmpp side: a client built from the account's typed settings (``config.XmppSettings``), the login,
and state sync (roster and rooms as snapshots, history catch-up from MAM, XEP-0313). slixmpp never
reconnects on its own here: retrying is the supervisor's decision.

The sync cursor is a small JSON object: the last archive id seen in the account's own archive (1:1
messages) and in each room's archive, plus the time of the sync (used when an archive had no id yet, or
when the server no longer knows the id, e.g. after archive expiry)::

    {"user": "<archive id>" | null, "rooms": {"room@conference.example.org": "<archive id>"}, "t": "<ISO>"}

The first sync (no cursor) fetches no history: the bridge starts from "now". Later syncs page through
everything archived after the cursor (up to ``MAX_PAGES`` pages of ``PAGE_SIZE`` per archive; beyond that
the snapshot says ``complete=False`` and the next sync carries on from where this one stopped).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

from msgr_bridge import Account, AuthenticationFailed, BridgeError, Contact, Conversation, TransientError
from msgr_bridge.schema import ConversationKind

from .capture import NS_CLIENT, NS_DELAY, NS_FORWARD, NS_MAM, capture
from .config import XmppSettings
from .convert import NETWORK

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


# --- state sync ------------------------------------------------------------------------------------

PAGE_SIZE = 100
MAX_PAGES = 20
CLOCK_SKEW = timedelta(minutes=1)
"""Time-based queries start this much earlier than the last sync, in case the server's clock is behind."""


def parse_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The cursor as a dict, or None for a first sync (also for a cursor this code cannot read)."""
    if not cursor:
        return None
    try:
        value = json.loads(cursor)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("rooms", {}), dict):
        return None
    return value


async def roster_snapshot(
    client: ClientXMPP, account: Account, rooms: Mapping[str, Sequence[str]]
) -> tuple[tuple[Contact, ...], tuple[Conversation, ...]]:
    """Roster entries as contacts (and 1:1 conversations), joined rooms as group conversations.

    ``rooms`` maps each joined room to its occupants' JIDs (``muc.Rooms.members``)."""
    try:
        await client.get_roster(timeout=10)
    except (IqError, IqTimeout) as exc:
        raise TransientError(f"could not fetch the XMPP roster: {exc}") from exc
    own = client.boundjid.bare
    contacts = [Contact(network=NETWORK, account_id=account.id, remote_id=own, is_self=True)]
    conversations = []
    roster = client.client_roster
    for jid in sorted(roster.keys()):
        if jid == own or jid in rooms:  # slixmpp also files rooms it got presence from under the roster
            continue
        name = roster[jid]["name"] or None
        contacts.append(Contact(network=NETWORK, account_id=account.id, remote_id=jid, display_name=name))
        conversations.append(
            Conversation(
                network=NETWORK,
                account_id=account.id,
                remote_id=jid,
                name=name,
                type=ConversationKind.DIRECT,
                members=(own, jid),
            )
        )
    for room, members in rooms.items():
        conversations.append(
            Conversation(
                network=NETWORK,
                account_id=account.id,
                remote_id=room,
                name=JID(room).user,
                type=ConversationKind.GROUP,
                members=tuple(members),
            )
        )
    return tuple(contacts), tuple(conversations)


async def fetch_history(
    client: ClientXMPP,
    cursor: Mapping[str, Any] | None,
    *,
    own_bare: str,
    room_nicks: Mapping[str, str],
    occupant_id_rooms: Container[str] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """(payloads archived since the cursor, the new cursor, whether everything was fetched).

    ``occupant_id_rooms``: rooms whose occupant-ids (XEP-0421) are trusted (see ``client.capture``)."""
    now = datetime.now(UTC)
    if cursor is None:
        return [], {"user": None, "rooms": {}, "t": now.isoformat()}, True
    since = _since(cursor.get("t"), now)
    old_rooms = cursor.get("rooms") or {}
    payloads: list[dict[str, Any]] = []
    after = cursor.get("user") if isinstance(cursor.get("user"), str) else None
    ctx = _Capture(own_bare, room_nicks, occupant_id_rooms)
    items, user_last, complete = await _fetch_one(client, None, after, since, ctx)
    payloads += items
    rooms: dict[str, str | None] = {}
    for room in room_nicks:
        after = old_rooms.get(room) if isinstance(old_rooms.get(room), str) else None
        items, last, room_complete = await _fetch_one(client, room, after, since, ctx)
        payloads += items
        rooms[room] = last
        complete = complete and room_complete
    return payloads, {"user": user_last, "rooms": rooms, "t": now.isoformat()}, complete


def _since(raw: Any, now: datetime) -> datetime:
    try:
        t = datetime.fromisoformat(raw) if isinstance(raw, str) else now
    except ValueError:
        t = now
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t - CLOCK_SKEW


class _Capture(NamedTuple):
    """What ``client.capture`` needs besides the stanza."""

    own_bare: str
    room_nicks: Mapping[str, str]
    occupant_id_rooms: Container[str]


async def _fetch_one(
    client: ClientXMPP, archive: str | None, after: str | None, since: datetime, ctx: _Capture
) -> tuple[list[dict[str, Any]], str | None, bool]:
    mam = client.plugin["xep_0313"]
    payloads: list[dict[str, Any]] = []
    last, complete = after, True
    for _page in range(MAX_PAGES):
        rsm: dict[str, Any] = {"max": PAGE_SIZE}
        if last:
            rsm["after"] = last
        try:
            iq = await mam.retrieve(
                jid=JID(archive) if archive else None, start=None if last else since, rsm=rsm, timeout=10
            )
        except IqError as exc:
            if exc.condition == "item-not-found" and last:
                last, complete = None, False  # the id expired from the archive: fall back to time
                continue
            raise TransientError(f"MAM query on {archive or ctx.own_bare} failed: {exc}") from exc
        except IqTimeout as exc:
            raise TransientError(f"MAM query on {archive or ctx.own_bare} timed out") from exc
        results = iq["mam"]["results"]
        for result in results:
            item = _archived(result.xml, ctx)
            if item is not None:
                archive_id, payload = item
                last = archive_id
                if payload is not None:
                    payloads.append(payload)
        fin = iq.xml.find(f"{{{NS_MAM}}}fin")
        if not results or (fin is not None and fin.get("complete") in ("true", "1")):
            return payloads, last, complete
    return payloads, last, False


def _archived(xml: Any, ctx: _Capture) -> tuple[str, dict[str, Any] | None] | None:
    result = xml.find(f"{{{NS_MAM}}}result")
    if result is None or not result.get("id"):
        return None
    forwarded = result.find(f"{{{NS_FORWARD}}}forwarded")
    inner = forwarded.find(f"{{{NS_CLIENT}}}message") if forwarded is not None else None
    if inner is None:
        return result.get("id"), None
    delay = forwarded.find(f"{{{NS_DELAY}}}delay") if forwarded is not None else None
    stamp = delay.get("stamp") if delay is not None else None
    payload = capture(
        inner,
        own_bare=ctx.own_bare,
        room_nicks=ctx.room_nicks,
        archive_id=result.get("id"),
        stamp=stamp,
        occupant_id_rooms=ctx.occupant_id_rooms,
    )
    return result.get("id"), payload
