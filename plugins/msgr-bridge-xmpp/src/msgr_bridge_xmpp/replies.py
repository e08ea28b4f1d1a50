"""Which message id a reply, reaction or retraction names, in both directions.

The canonical ``reply_to`` and ``target_id`` are the message's ``remote_id``, which is its ``id``
attribute (or origin-id). XEP-0461 (replies), XEP-0444 (reactions) and XEP-0424 (retractions) want the
same in 1:1 chats, but in a group chat the id the room assigned (XEP-0359 ``<stanza-id by='room'>``),
because only that id is guaranteed unique in the room; a reply also carries a ``to`` attribute naming
the author (occupant JID in a room). Neither is in the outbound request, so the connector remembers,
for recent messages it has seen (live, from the archive, and its own sends), the author and the room's
stanza-id. With that:

- outbound, ``reply_to`` goes out as the room's stanza-id and with ``to`` when the message is known, and
  as the plain id without ``to`` when it is not (older than what is remembered);
  a reaction or retraction in a room names the stanza-id when known, else the plain id;
- a read marker (XEP-0333 ``displayed``) sent into a room names the stanza-id too, as the XEP asks;
- inbound, a reply, reaction, retraction, read marker or moderation (XEP-0425) naming a room stanza-id
  is mapped back to that message's ``remote_id``; an id that is not known is passed on as it is.

The same entries say who wrote each message (and, in rooms that give one, the author's XEP-0421
occupant-id), which ``authorship.py`` needs to refuse a retraction or correction by anyone else. So a
message id is never handed from one author to another: when a second sender uses an id already
remembered for someone else in that conversation (in a room anyone can choose any id), the first author
keeps it, and the newcomer's copy is not remembered.

What is remembered is bounded (``LIMIT`` messages, the least recently seen dropped first). It survives
restarts through ``idstore.IdStore``: every new or changed entry is also queued in ``pending`` for the
connector to write out in batches, so a reaction to a message seen before a restart still names the
room's stanza-id, and a retraction of it is still checked against its author.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from slixmpp import JID
from slixmpp.jid import InvalidJID

LIMIT = 5000

Entry = tuple[str, str, str, str | None, str | None]
"""(conversation, message id, author, the room's stanza-id, the author's occupant-id): one remembered
message. The last two are None when unknown; the occupant-id is only kept from a room that vouches for it
(XEP-0421: the room then replaces whatever the sender put there)."""

Known = tuple[str, str | None, str | None]
"""(author, the room's stanza-id, the author's occupant-id) of a remembered message."""


def place(payload: Mapping[str, Any], own_jid: str) -> tuple[str, str] | None:
    """(conversation, author) of a captured message payload; None when its addresses are not JIDs.

    The author is the occupant JID in a room and in a private message inside one, else the bare JID
    (``own_jid`` for what we sent)."""
    if not isinstance(payload.get("from"), str):
        return None
    try:
        sender = JID(payload["from"])
        to = JID(str(payload.get("to") or ""))
    except InvalidJID:
        return None
    is_self = bool(payload.get("self"))
    if payload.get("type") == "groupchat":
        return str(sender.bare), str(sender)
    if payload.get("private"):  # a private message with a room occupant
        return str(to if is_self else sender), str(sender)
    return str(to.bare if is_self else sender.bare), own_jid if is_self else str(sender.bare)


class RecentMessages:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._by_id: OrderedDict[tuple[str, str], Known] = OrderedDict()
        self._by_stanza_id: dict[tuple[str, str], str] = {}
        self.pending: deque[Entry] = deque(maxlen=limit)
        """Entries remembered since the last ``take_pending`` (older ones would be evicted anyway)."""

    def load(self, entries: Iterable[Entry]) -> None:
        """Remember entries read back from the state store, oldest first, without queueing them again."""
        for entry in entries:
            self.remember(*entry, persist=False)

    def take_pending(self) -> list[Entry]:
        out = list(self.pending)
        self.pending.clear()
        return out

    def remember(
        self,
        conversation: str,
        msg_id: str,
        author: str,
        stanza_id: str | None = None,
        occupant_id: str | None = None,
        *,
        persist: bool = True,
    ) -> None:
        key = (conversation, msg_id)
        old = self._by_id.get(key)
        if old is not None and old[0] != author:
            return  # another sender reusing a remembered id: the first author keeps it
        self._by_id.pop(key, None)
        stanza_id = stanza_id or (old[1] if old else None)
        occupant_id = occupant_id or (old[2] if old else None)
        self._by_id[key] = (author, stanza_id, occupant_id)
        if stanza_id:
            self._by_stanza_id[(conversation, stanza_id)] = msg_id
        if persist and old != (author, stanza_id, occupant_id):  # a copy seen again is not news
            self.pending.append((conversation, msg_id, author, stanza_id, occupant_id))
        while len(self._by_id) > self.limit:
            (conv, _), (_, sid, _) = self._by_id.popitem(last=False)
            if sid:
                self._by_stanza_id.pop((conv, sid), None)

    def original(self, conversation: str, ref: str) -> Known | None:
        """What is remembered of the message ``ref`` names: its id, or (in a room) its stanza-id."""
        known = self._by_id.get((conversation, ref))
        if known is None and (msg_id := self._by_stanza_id.get((conversation, ref))):
            known = self._by_id.get((conversation, msg_id))
        return known

    def outbound(self, conversation: str, remote_id: str, groupchat: bool) -> tuple[str, str | None]:
        """(the id to put in ``<reply id>``, the author for ``<reply to>`` or None)."""
        known = self._by_id.get((conversation, remote_id))
        if known is None:
            return remote_id, None
        author, stanza_id, _occupant_id = known
        return (stanza_id or remote_id) if groupchat else remote_id, author

    def reference(self, conversation: str, remote_id: str, groupchat: bool) -> str:
        """The id an outbound reaction, retraction or read marker names: in a room its stanza-id, if known."""
        return self.outbound(conversation, remote_id, groupchat)[0]

    def _canonical(self, conversation: str, ref: Any) -> Any:
        """The ``remote_id`` of the message a room stanza-id ``ref`` belongs to; else ``ref`` unchanged."""
        if isinstance(ref, str) and (mapped := self._by_stanza_id.get((conversation, ref))):
            return mapped
        return ref

    def observe(self, payload: Mapping[str, Any], own_jid: str) -> Mapping[str, Any]:
        """Remember a captured message payload; returns it with the ids it names mapped to ``remote_id``s.

        Those are ``reply_to``, ``retract``, ``replace`` (XEP-0308 names the original's own id, but a
        client may use the room's) and the ``id`` of ``reactions``, ``marker`` and ``moderated``.
        """
        where = place(payload, own_jid) if payload.get("kind") is None else None
        if where is None:
            return payload
        conversation, author = where
        mapped: dict[str, Any] = {}
        for field in ("reply_to", "retract", "replace"):
            if (ref := payload.get(field)) != (canonical := self._canonical(conversation, ref)):
                mapped[field] = canonical
        for field in ("reactions", "marker", "moderated"):
            sub = payload.get(field)
            if isinstance(sub, Mapping) and (
                (ref := sub.get("id")) != (canonical := self._canonical(conversation, ref))
            ):
                mapped[field] = {**sub, "id": canonical}
        if mapped:
            payload = {**payload, **mapped}
        msg_id, stanza_id = payload.get("id"), payload.get("stanza_id")
        # a retraction carries a fallback body ("this message was retracted"): not a message to remember
        has_content = payload.get("body") is not None and not any(
            payload.get(field) for field in ("replace", "retract", "moderated")
        )
        if has_content and isinstance(msg_id, str) and msg_id:
            occupant_id = payload.get("occupant_id")
            self.remember(
                conversation,
                msg_id,
                author,
                stanza_id if isinstance(stanza_id, str) else None,
                occupant_id if isinstance(occupant_id, str) else None,
            )
        return payload
