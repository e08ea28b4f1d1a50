"""State sync for XMPP: roster and rooms as snapshots, and history catch-up from MAM (XEP-0313).

The sync cursor is a small JSON object: the last archive id seen in the account's own archive (1:1
messages) and in each room's archive, plus the time of the sync (used when an archive had no id yet, or
when the server no longer knows the id, e.g. after archive expiry)::

    {"user": "<archive id>" | null, "rooms": {"room@conference.example.org": "<archive id>"}, "t": "<ISO>"}

The first sync (no cursor) fetches no history: the bridge starts from "now". Later syncs page through
everything archived after the cursor (up to ``MAX_PAGES`` pages of ``PAGE_SIZE`` per archive; beyond that
the snapshot says ``complete=False`` and the next sync carries on from where this one stopped).
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

from msgr_bridge import Account, Contact, Conversation, TransientError
from msgr_bridge.schema import ConversationKind

from .capture import NS_CLIENT, NS_DELAY, NS_FORWARD, NS_MAM, capture
from .convert import NETWORK

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
