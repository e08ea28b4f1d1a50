"""Only a message's author may retract (XEP-0424) or correct (XEP-0308) it.

Neither XEP lets the server check this: a retraction or correction is an ordinary message naming another
message's id, and in a room anyone can send one naming anyone's message. Clients (Conversations, Gajim,
Dino) ignore those that do not come from the original's sender; the bridge does the same before they
become ``Delete`` or ``Edit`` in the canonical store. The author of the original is what
``memory.MessageMemory`` remembers (live, from the archive, our own sends; across restarts, in the
account's state).

Who counts as the same sender:

- in a room, the XEP-0421 occupant-id when both the original and the retraction or correction carry one
  from the room (the connector only keeps occupant-ids from rooms that advertise the feature: such a
  room replaces whatever the sender put there, elsewhere anyone could forge one). It stays the same for
  one user in one room (Prosody derives it from the real bare JID), so it survives nick changes and
  covers our own other clients whatever nick they use. Without it, the occupant JID
  (``room@service/nick``) must match: our other client retracting in the room under our nick is the
  same occupant, but anyone who renamed since their message is someone else;
- in a 1:1 chat, the bare JID: the peer's own other clients, and ours (carbons, ``self``), count;
- in a private message with a room occupant, the two sides: the occupant (the conversation's JID, or
  its occupant-id when both carry one) or us.

When the original is not remembered (older than the last ``memory.LIMIT`` messages, or never seen):

- in a 1:1 chat (or a private message with a room occupant) the stanza is accepted: only the two
  parties can send there, and the remembered messages are shared with every room of the account, so on a
  busy account a 1:1 message is forgotten within hours and refusing would lose genuine retractions. What
  a peer could wrongly retract is limited to old messages of that one conversation;
- in a room it is ignored, with a warning: an unverifiable deletion or rewrite of possibly someone else's
  message is worse than a retraction that is not mirrored (the message stays on the other networks). The
  same happens to our own retraction of a forgotten message from another client.

The author of an id is the first one seen (``memory.MessageMemory.remember``): in a room anyone can
send a message reusing someone else's id, and must not become its author that way.

An ignored stanza is logged (``xmpp.retraction_ignored`` / ``xmpp.correction_ignored`` with the reason)
and dropped; nothing is raised. Moderator retractions (XEP-0425, ``capture.py``) come from the room
itself and are not judged here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .memory import Known, MessageMemory, place

EVENTS = {"retract": "xmpp.retraction_ignored", "replace": "xmpp.correction_ignored"}
"""The payload field naming the original -> the log event when the stanza is ignored."""


async def unverified(
    payload: Mapping[str, Any], memory: MessageMemory, own_jid: str
) -> tuple[str, str, str] | None:
    """(log event, target id, reason) when ``payload`` retracts or corrects a message its sender did not
    write, or one that cannot be checked in a room.

    ``payload`` is one that ``memory.observe`` returned (its ids mapped to the originals' ``remote_id``).
    None for everything else, moderations included."""
    if payload.get("kind") is not None or payload.get("moderated") is not None:
        return None
    where = place(payload, own_jid)
    for field, event in EVENTS.items():
        target = payload.get(field)
        if not isinstance(target, str) or not target:
            continue
        if where is None:
            return event, target, "the sender's address is not a JID"
        conversation, author = where
        reason = _judge(payload, conversation, author, await memory.original(conversation, target))
        if reason is not None:
            return event, target, reason
    return None


def _judge(
    payload: Mapping[str, Any],
    conversation: str,
    author: str,
    original: Known | None,
) -> str | None:
    groupchat = payload.get("type") == "groupchat"
    if original is None:
        if groupchat:
            return "the original message is not known (too old or never seen): its author cannot be checked"
        return None
    first_author, _stanza_id, first_occupant = original
    occupant = payload.get("occupant_id")
    if isinstance(occupant, str) and occupant and first_occupant:
        if occupant == first_occupant:
            return None
        return f"occupant-id {occupant!r} is not the author's ({first_occupant!r})"
    if payload.get("private"):
        by_peer, written_by_peer = not payload.get("self"), first_author == conversation
        if by_peer == written_by_peer:
            return None
        return f"{author} is not the author of the message"
    if author == first_author:
        return None
    return f"{author} is not the author ({first_author})"


__all__ = ["EVENTS", "unverified"]
