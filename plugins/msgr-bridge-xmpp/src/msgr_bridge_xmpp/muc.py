"""Who is in each joined room (MUC, XEP-0045), and which occupant presences are membership changes.

A room tells a new occupant who is there by sending it every current occupant's presence, then the
occupant's own presence (status 110), then history and the subject. The bridge joins again on every fresh
session, so reporting that flood as joins would repeat one "join" per person per reconnect. Instead:

- presences before our own self-presence only fill the occupant list, which ``sync_state`` reports as the
  room conversation's ``members`` (the core replaces its stored member list with that snapshot, so the
  net effect of a disconnection becomes joins and leaves there, silently, without events);
- presences after it are live changes: a nick that was not present is a join, an ``unavailable`` one a
  leave (kick with status 307, ban with 301), and a presence update from someone already present (away,
  status text) is nothing;
- a nick change (status 303 on the ``unavailable`` presence, with the new nick in ``<item nick=..>``)
  becomes one ``rename`` of the old occupant JID, and the new nick's following presence is not a join.
  Occupants are keyed by occupant JID (``room@service/nick``, the same ids message senders carry), so
  after a rename the member list holds the old occupant JID, renamed, until the next sync replaces it
  with the new one.

XEP-0198 resumption keeps the occupant list: presences the server held for us arrive as live changes.

After each join the connector asks the room whether it gives occupant-ids (XEP-0421, Prosody's muc does
by default): ``authorship.py`` trusts them only from rooms that do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import InvalidJID

from .convert import PAYLOAD_VERSION

NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
SELF, BANNED, NICK_CHANGED, KICKED = 110, 301, 303, 307


def _q(tag: str) -> str:
    return f"{{{NS_MUC_USER}}}{tag}"


async def advertises_occupant_ids(client: ClientXMPP, room: str, *, timeout: float = 10.0) -> bool:
    """Whether the room lists XEP-0421 in its disco#info: only then are occupant-ids its own.

    A room that does replaces any occupant-id a sender wrote; elsewhere anyone can write any. A room that
    does not answer counts as not advertising it (occupant JIDs are compared instead)."""
    try:
        info = await client.plugin["xep_0030"].get_info(jid=JID(room), timeout=timeout)
    except (IqError, IqTimeout):
        return False
    return NS_OCCUPANT_ID in info["disco_info"]["features"]


class Rooms:
    """Our nick and the current occupants (nick -> real JID when the room shows it) per joined room."""

    def __init__(self, nicks: dict[str, str] | None = None) -> None:
        self.nicks: dict[str, str] = nicks or {}
        """Room JID -> our nick there (updated when the room changes it)."""
        self.occupants: dict[str, dict[str, str | None]] = {}
        self.occupant_id_rooms: set[str] = set()
        """Joined rooms that advertise XEP-0421 occupant-ids (``advertises_occupant_ids`` after a join)."""
        self._joined: set[str] = set()

    def configure(self, nicks: dict[str, str], *, fresh: bool) -> None:
        """Set the rooms of a session. ``fresh``: a new session that joins again, so forget who was there."""
        if not fresh:
            nicks = {room: self.nicks.get(room, nick) for room, nick in nicks.items()}
        self.nicks = nicks
        if fresh:
            self.occupants = {room: {} for room in nicks}
            self._joined.clear()
            self.occupant_id_rooms.clear()
        else:
            self.occupants = {room: self.occupants.get(room, {}) for room in nicks}
            self._joined &= set(nicks)
            self.occupant_id_rooms &= set(nicks)

    def members(self, room: str) -> tuple[str, ...]:
        """Occupant JIDs of everyone in the room, ourselves included."""
        return tuple(sorted(f"{room}/{nick}" for nick in self.occupants.get(room, {})))

    def observe(self, xml: Element) -> dict[str, Any] | None:
        """Update the occupant list from one presence; a payload when it is a membership change to report."""
        if xml.get("type") not in (None, "unavailable"):
            return None  # errors, subscriptions
        try:
            sender = JID(xml.get("from") or "")
        except InvalidJID:
            return None
        room, nick = str(sender.bare), sender.resource
        x = xml.find(_q("x"))
        if room not in self.nicks or not nick or x is None:
            return None
        codes = sorted({int(c) for s in x.findall(_q("status")) if (c := s.get("code") or "").isdigit()})
        item = x.find(_q("item"))
        real_jid = item.get("jid") if item is not None else None
        is_self = SELF in codes
        present = self.occupants.setdefault(room, {})
        was_present = nick in present
        joined = room in self._joined
        new_nick: str | None = None
        if xml.get("type") == "unavailable":
            present.pop(nick, None)
            if NICK_CHANGED in codes and item is not None and item.get("nick"):
                new_nick = str(item.get("nick"))
                present[new_nick] = real_jid  # its coming presence is then not a join
                if is_self:
                    self.nicks[room] = new_nick
            elif is_self:  # we are out of the room (left, kicked, room destroyed): we see nobody any more
                present.clear()
                self._joined.discard(room)
            if not joined or not (was_present or is_self):
                return None
        else:
            present[nick] = real_jid
            if is_self:
                self.nicks[room] = nick  # the room may have given us another nick than we asked for
            if is_self and not joined:
                self._joined.add(room)  # the end of the join flood: what follows is live
                return None
            if not joined or was_present:
                return None
        actor = item.find(_q("actor")) if item is not None else None
        return {
            "v": PAYLOAD_VERSION,
            "kind": "presence",
            "type": xml.get("type") or "available",
            "from": str(sender),
            "codes": codes,
            "nick": new_nick,
            "jid": real_jid,
            "actor": actor.get("nick") if actor is not None else None,
            "reason": item.findtext(_q("reason")) if item is not None else None,
            "self": is_self,
            "timestamp": datetime.now(UTC).isoformat(),
        }
