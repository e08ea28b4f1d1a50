"""Pure conversion of captured XMPP message payloads into canonical events.

``client.capture`` turns a message stanza into a small JSON-compatible dict (payload version 1)::

    {"v": 1, "type": "chat" | "groupchat" | "normal", "from": "<full jid>", "to": "<full jid>",
     "id": "<id attribute or origin-id>", "stanza_id": "<archive id>" | None, "self": bool,
     "timestamp": "<ISO 8601>" | None, "body": str | None, "replace": "<id>" | None,
     "retract": "<id>" | None, "reactions": {"id": "<id>", "values": [...], "removed": [...]} | None,
     "marker": {"kind": "displayed" | "received" | "acknowledged", "id": "<id>"} | None,
     "receipt": "<id>" | None, "chat_state": "composing" | "paused" | ... | None,
     "oob": [{"url": ..., "desc": ...}], "reply_to": "<id>" | None, "subject": str | None,
     "private": bool,   # a private message with a room occupant (conversation = occupant JID)
     "moderated": {"id": "<id>", "by": "<room>/<nick>" | None, "reason": str | None} | None,
     "occupant_id": "<XEP-0421 id the room gave the sender>" | None}

``muc.Rooms`` captures occupant presences that change a room's membership (same version)::

    {"v": 1, "kind": "presence", "type": "available" | "unavailable", "from": "<room>/<nick>",
     "codes": [<MUC status codes>], "nick": "<new nick>" | None, "jid": "<real jid>" | None,
     "actor": "<nick>" | None, "reason": str | None, "self": bool, "timestamp": "<ISO 8601>"}

An ``available`` presence is a join; an ``unavailable`` one a rename (status 303, to ``nick``), a ban
(301), a kick (307) or else a leave. The user is the occupant JID, as for the room's messages.

Identifiers: a 1:1 conversation is the other party's bare JID, a group chat is the room's bare JID (both
globally unique; a private message with a room occupant is keyed by the occupant JID ``room@service/nick``).
A message's ``remote_id`` is its ``id`` attribute (which equals our ``txn_id`` for what
we send), so live, reflected and archived copies of one message share it. In a room the sender is the
occupant JID ``room@service/nick``.

``moderated`` (absent in older payloads) is a moderator's retraction (XEP-0425) announced by the room
itself (``from`` is the room's bare JID); it becomes a ``Delete`` of ``id`` whose sender is the moderator
(none when the room did not say who). ``occupant_id`` (absent in older payloads) serves only the
connector's author check of retractions and corrections (``authorship.py``); conversion ignores it.

Mapping: corrections (XEP-0308) become ``Edit``, retractions (XEP-0424) ``Delete``, reactions (XEP-0444,
which carry the sender's whole set; the connector adds ``removed``) one ``Reaction`` per change,
``displayed``/``acknowledged`` chat markers (XEP-0333) ``ReadReceipt``, chat states (XEP-0085) ``Typing``.
Delivery-only acknowledgements (XEP-0184 receipts and ``received`` markers) say a device got the message,
not that a person read it; the schema has no delivery event, so they convert to nothing. Anything that is
not a dict of the expected shape raises ``MalformedPayload``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from msgr_bridge import (
    Account,
    Attachment,
    Delete,
    Edit,
    MalformedPayload,
    MembershipChange,
    Message,
    Reaction,
    ReadReceipt,
    Sender,
    Typing,
)
from msgr_bridge.schema import Event, MembershipAction, ReactionAction

NETWORK = "xmpp"
PAYLOAD_VERSION = 1
_TYPES = {"chat", "groupchat", "normal", "headline"}
_TYPING_ACTIVE = {"composing": True, "paused": False, "active": False, "inactive": False, "gone": False}
_READ_MARKERS = {"displayed", "acknowledged"}
_LEAVING = {301: MembershipAction.BAN, 307: MembershipAction.KICK}


def _str(p: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = p.get(key)
    if value is None:
        if required:
            raise MalformedPayload(f"xmpp payload lacks {key!r}")
        return None
    if not isinstance(value, str) or (required and not value):
        raise MalformedPayload(f"xmpp payload field {key!r} must be a string, got {type(value).__name__}")
    return value


def _jid_parts(jid: str) -> tuple[str, str | None]:
    """(bare, resource) of a JID string; raises MalformedPayload when it is not one."""
    bare, sep, resource = jid.partition("/")
    local, at, domain = bare.rpartition("@")
    if not domain or (at and not local) or any(c.isspace() for c in bare) or (sep and not resource):
        raise MalformedPayload(f"not a JID: {jid!r}")
    return bare.lower(), resource if sep else None


def _timestamp(p: Mapping[str, Any]) -> datetime:
    raw = _str(p, "timestamp")
    if raw is None:
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise MalformedPayload(f"bad timestamp {raw!r}") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _sub(p: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = p.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"xmpp payload field {key!r} must be an object")
    return value


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedPayload(f"{what} must be a list of strings")
    return value


def _attachments(p: Mapping[str, Any]) -> tuple[Attachment, ...]:
    raw = p.get("oob") or []
    if not isinstance(raw, list):
        raise MalformedPayload("oob must be a list")
    out = []
    for item in raw:
        url = _str(item, "url", required=True) if isinstance(item, Mapping) else None
        if url is None:
            raise MalformedPayload("oob entries must be objects with a url")
        name = url.rstrip("/").rsplit("/", 1)[-1] or url
        out.append(Attachment(name=name, url=url))
    return tuple(out)


def convert(payload: Any, account: Account) -> Sequence[Event]:
    """Turn one captured payload into canonical events (possibly none). Raises only ``MalformedPayload``."""
    try:
        return _convert(payload, account)
    except MalformedPayload:
        raise
    except (ValidationError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise MalformedPayload(f"xmpp payload could not be converted: {exc}") from exc


def _convert(p: Any, account: Account) -> Sequence[Event]:
    if not isinstance(p, Mapping):
        raise MalformedPayload(f"xmpp payload must be an object, got {type(p).__name__}")
    if p.get("v") != PAYLOAD_VERSION:
        raise MalformedPayload(f"unknown xmpp payload version {p.get('v')!r}")
    if p.get("kind") == "presence":
        return _membership(p, account)
    mtype = _str(p, "type") or "normal"
    if mtype not in _TYPES:
        raise MalformedPayload(f"unknown message type {mtype!r}")
    from_bare, from_res = _jid_parts(_str(p, "from", required=True) or "")
    to_raw = _str(p, "to")
    to_bare = _jid_parts(to_raw)[0] if to_raw else account.remote_user_id.lower()
    is_self = p.get("self", False)
    if not isinstance(is_self, bool):
        raise MalformedPayload("'self' must be a boolean")
    if (moderated := _sub(p, "moderated")) is not None:
        return _moderation(p, moderated, account)
    if mtype == "groupchat":
        conversation = from_bare
        if from_res is None:
            return ()  # the room itself speaking (subject, status): no person to attribute it to
        sender = Sender(user_id=f"{from_bare}/{from_res}", display_name=from_res, is_self=is_self)
    elif p.get("private", False) is True:  # a private message with a room occupant: keyed by occupant JID
        peer = to_raw if is_self else _str(p, "from")
        if not peer or _jid_parts(peer)[1] is None:
            raise MalformedPayload("a private room message without the occupant's nick")
        conversation = peer
        sender = Sender(user_id=str(_str(p, "from")), display_name=from_res, is_self=is_self)
    else:
        conversation = to_bare if is_self else from_bare
        sender = Sender(user_id=from_bare, is_self=is_self)
    base: dict[str, Any] = {
        "network": NETWORK,
        "account_id": account.id,
        "conversation_id": conversation,
        "timestamp": _timestamp(p),
    }
    msg_id = _str(p, "id")
    body = _str(p, "body")
    _str(p, "subject")

    if (target := _str(p, "retract")) is not None:
        return (Delete(**base, target_id=target, sender=sender),)
    if (target := _str(p, "replace")) is not None:
        if body is None:
            raise MalformedPayload("a correction without a body")
        return (Edit(**base, target_id=target, remote_id=msg_id, sender=sender, text=body),)
    if (reactions := _sub(p, "reactions")) is not None:
        target = _str(reactions, "id", required=True) or ""
        added = _str_list(reactions.get("values"), "reactions.values")
        removed = _str_list(reactions.get("removed"), "reactions.removed")
        return tuple(
            [Reaction(**base, target_id=target, sender=sender, emoji=e) for e in added if e]
            + [
                Reaction(**base, target_id=target, sender=sender, emoji=e, action=ReactionAction.REMOVE)
                for e in removed
                if e
            ]
        )
    events: list[Event] = []
    if body is not None or p.get("oob"):
        remote_id = msg_id or _str(p, "stanza_id")
        if not remote_id:
            raise MalformedPayload("a message with neither id nor stanza-id")
        events.append(
            Message(
                **base,
                remote_id=remote_id,
                sender=sender,
                text=body or "",
                attachments=_attachments(p),
                reply_to=_str(p, "reply_to"),
                txn_id=msg_id if is_self else None,
            )
        )
    elif (marker := _sub(p, "marker")) is not None:
        kind = _str(marker, "kind", required=True)
        up_to = _str(marker, "id", required=True) or ""
        if kind in _READ_MARKERS:
            events.append(ReadReceipt(**base, up_to_id=up_to, reader=sender))
    _str(p, "receipt")
    state = _str(p, "chat_state")
    if state is not None and body is None:
        if state not in _TYPING_ACTIVE:
            raise MalformedPayload(f"unknown chat state {state!r}")
        events.append(Typing(**base, user=sender, active=_TYPING_ACTIVE[state]))
    return tuple(events)


def _moderation(p: Mapping[str, Any], moderated: Mapping[str, Any], account: Account) -> Sequence[Event]:
    room, resource = _jid_parts(_str(p, "from", required=True) or "")
    if p.get("type") != "groupchat" or resource is not None:
        raise MalformedPayload("a moderation not announced by the room itself")
    target = _str(moderated, "id", required=True) or ""
    _str(moderated, "reason")
    sender = None
    if (by := _str(moderated, "by")) is not None:
        by_room, nick = _jid_parts(by)
        if by_room != room or nick is None:
            raise MalformedPayload(f"a moderation by {by!r}, not an occupant of {room}")
        sender = Sender(user_id=f"{room}/{nick}", display_name=nick)
    return (
        Delete(
            network=NETWORK, account_id=account.id, conversation_id=room, timestamp=_timestamp(p),
            target_id=target, sender=sender,
        ),
    )  # fmt: skip


def _membership(p: Mapping[str, Any], account: Account) -> Sequence[Event]:
    room, nick = _jid_parts(_str(p, "from", required=True) or "")
    if nick is None:
        raise MalformedPayload("a room presence without the occupant's nick")
    is_self = p.get("self", False)
    codes = p.get("codes") or []
    if not isinstance(is_self, bool) or not isinstance(codes, list):
        raise MalformedPayload("'self' must be a boolean and 'codes' a list")
    user = Sender(user_id=f"{room}/{nick}", display_name=nick, is_self=is_self)
    actor_nick = _str(p, "actor")
    _str(p, "jid")
    common: dict[str, Any] = {
        "network": NETWORK,
        "account_id": account.id,
        "conversation_id": room,
        "timestamp": _timestamp(p),
        "user": user,
        "reason": _str(p, "reason"),
        "actor": Sender(user_id=f"{room}/{actor_nick}", display_name=actor_nick) if actor_nick else None,
    }
    kind = _str(p, "type")
    if kind == "available":
        return (MembershipChange(**common, action=MembershipAction.JOIN),)
    if kind != "unavailable":
        raise MalformedPayload(f"unknown presence type {kind!r}")
    if 303 in codes and (new_nick := _str(p, "nick")):
        return (MembershipChange(**common, action=MembershipAction.RENAME, new_name=new_nick),)
    action = next((a for code, a in _LEAVING.items() if code in codes), MembershipAction.LEAVE)
    return (MembershipChange(**common, action=action),)
