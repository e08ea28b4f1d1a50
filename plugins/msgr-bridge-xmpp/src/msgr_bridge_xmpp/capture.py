"""Stanza to payload: a message stanza captured as a small JSON-compatible dict (``convert.py`` documents
its fields), read from the XML directly (namespaces below), so a payload depends only on what was on the
wire, not on which slixmpp plugins happened to be loaded.

Moderator retractions in rooms (XEP-0425) are read here in both wire versions. A moderator asks the room to
retract someone's message; the room tells every occupant in a message from the room's own bare JID naming
the message by its room stanza-id. Version 0.3 (``urn:xmpp:message-moderate:1``, Prosody's
mod_muc_moderation) nests ``<moderated by=...>`` (by: SHOULD) and ``<reason>`` in a XEP-0424
``<retract id=STANZA-ID>``; version 0.2 (``urn:xmpp:message-moderate:0``, still sent alongside) wraps
``<moderated by=...><retract/><reason/></moderated>`` in a fastening ``<apply-to id=STANZA-ID>``. Only the
room can moderate: the same elements from an occupant (which anyone can send) are a forgery, as is a ``by``
outside the room. Those and moderations without a usable id raise ``InvalidModeration``, captured as
``"moderated": {"error": <why>}`` for the connector to log and drop.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any
from xml.etree.ElementTree import Element

from slixmpp import JID
from slixmpp.jid import InvalidJID

from .convert import PAYLOAD_VERSION
from .muc import NS_OCCUPANT_ID

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
NS_FASTEN = "urn:xmpp:fasten:0"
NS_MODERATE_0 = "urn:xmpp:message-moderate:0"
NS_MODERATE_1 = "urn:xmpp:message-moderate:1"
NS_RETRACT_0 = "urn:xmpp:message-retract:0"


class InvalidModeration(ValueError):
    """A stanza carrying moderation elements that cannot be acted on (the message says why)."""


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _found(xml: Element) -> list[tuple[str | None, Element, str | None]]:
    """(the target id, the ``<moderated>`` element, the reason) of each moderation, version 0.3 first."""
    found = []
    for retract in xml.findall(_q(NS_RETRACT, "retract")):
        if (moderated := retract.find(_q(NS_MODERATE_1, "moderated"))) is not None:
            found.append((retract.get("id"), moderated, retract.findtext(_q(NS_RETRACT, "reason"))))
    for apply_to in xml.findall(_q(NS_FASTEN, "apply-to")):
        if (moderated := apply_to.find(_q(NS_MODERATE_0, "moderated"))) is not None:
            found.append((apply_to.get("id"), moderated, moderated.findtext(_q(NS_MODERATE_0, "reason"))))
    return found


def parse_moderation(xml: Element, joined_rooms: Container[str]) -> dict[str, str | None] | None:
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
