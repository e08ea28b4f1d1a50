"""Moderator retractions in rooms (XEP-0425), in both wire versions, read from a message stanza.

A moderator asks the room to retract someone's message; the room then tells every occupant, in a message
from the room's own bare JID that names the message by its room stanza-id. Version 0.3 of the XEP
(``urn:xmpp:message-moderate:1``, Prosody's mod_muc_moderation sends it) nests the moderation in a
XEP-0424 retraction::

    <retract xmlns="urn:xmpp:message-retract:1" id="STANZA-ID">
      <moderated xmlns="urn:xmpp:message-moderate:1" by="room@service/mod"/>  (by: SHOULD)
      <reason>spam</reason>
    </retract>

version 0.2 (``urn:xmpp:message-moderate:0``, which servers still send alongside) uses fastening::

    <apply-to xmlns="urn:xmpp:fasten:0" id="STANZA-ID">
      <moderated xmlns="urn:xmpp:message-moderate:0" by="room@service/mod">
        <retract xmlns="urn:xmpp:message-retract:0"/>
        <reason>spam</reason>
      </moderated>
    </apply-to>

Only the room can moderate: the same elements in a message from an occupant (which anyone can send, and
the room relays from ``room@service/nick``) are a forgery, as is a ``by`` outside the room. Those and
moderations without a usable id raise ``InvalidModeration``; the connector logs and drops the stanza.
"""

from __future__ import annotations

from collections.abc import Container
from xml.etree.ElementTree import Element

from slixmpp import JID
from slixmpp.jid import InvalidJID

NS_FASTEN = "urn:xmpp:fasten:0"
NS_MODERATE_0 = "urn:xmpp:message-moderate:0"
NS_MODERATE_1 = "urn:xmpp:message-moderate:1"
NS_RETRACT_0 = "urn:xmpp:message-retract:0"
NS_RETRACT_1 = "urn:xmpp:message-retract:1"


class InvalidModeration(ValueError):
    """A stanza carrying moderation elements that cannot be acted on (the message says why)."""


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _found(xml: Element) -> list[tuple[str | None, Element, str | None]]:
    """(the target id, the ``<moderated>`` element, the reason) of each moderation, version 0.3 first."""
    found = []
    for retract in xml.findall(_q(NS_RETRACT_1, "retract")):
        if (moderated := retract.find(_q(NS_MODERATE_1, "moderated"))) is not None:
            found.append((retract.get("id"), moderated, retract.findtext(_q(NS_RETRACT_1, "reason"))))
    for apply_to in xml.findall(_q(NS_FASTEN, "apply-to")):
        if (moderated := apply_to.find(_q(NS_MODERATE_0, "moderated"))) is not None:
            found.append((apply_to.get("id"), moderated, moderated.findtext(_q(NS_MODERATE_0, "reason"))))
    return found


def parse(xml: Element, joined_rooms: Container[str]) -> dict[str, str | None] | None:
    """``{"id": room stanza-id, "by": moderator's occupant JID | None, "reason": str | None}``.

    None when the stanza holds no moderation; ``InvalidModeration`` when it holds one that must not be
    applied. ``joined_rooms``: bare JIDs of the rooms we are in (only those may moderate)."""
    found = _found(xml)
    if not found:
        return None
    try:
        sender = JID(xml.get("from") or "")
    except InvalidJID:
        raise InvalidModeration("a moderation from an invalid address") from None
    room = str(sender.bare)
    if xml.get("type") != "groupchat" or sender.resource or room not in joined_rooms:
        raise InvalidModeration(f"a moderation not sent by a joined room itself (from {sender})")
    problems, valid = [], []
    for target, moderated, reason in found:
        if (
            moderated.tag == _q(NS_MODERATE_0, "moderated")
            and moderated.find(_q(NS_RETRACT_0, "retract")) is None
        ):
            problems.append("a moderation that is not a retraction")
            continue
        if not target:
            problems.append("a moderation without the retracted message's id")
            continue
        by = moderated.get("by")
        if by is not None:
            try:
                moderator = JID(by)
            except InvalidJID:
                moderator = JID()
            if moderator.bare != room or not moderator.resource:
                problems.append(f"a moderation 'by' someone outside the room ({by!r})")
                continue
        valid.append({"id": target, "by": by, "reason": reason})
    if not valid:
        raise InvalidModeration("; ".join(problems))
    first = valid[0]  # servers send both versions; version 0.3's may lack the moderator, 0.2's names it
    by = next((v["by"] for v in valid if v["id"] == first["id"] and v["by"]), None)
    return {**first, "by": by}


__all__ = ["InvalidModeration", "parse"]
