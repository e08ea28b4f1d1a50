"""What the connector remembers of recent messages, in bounded maps of the account's state (``ctx.state``).

**Ids and authors.** The canonical ``reply_to`` and ``target_id`` are a message's ``remote_id`` (its ``id``
attribute or origin-id). XEP-0461 replies, XEP-0444 reactions, XEP-0424 retractions and XEP-0333 markers
want the same in 1:1 chats, but in a room the id the room assigned (XEP-0359 ``<stanza-id by=room>``), the
only one unique there, and a reply names the author too. So for each message seen (live, from the archive,
our own sends) the map ``messages`` keeps its author, the room's stanza-id and the author's XEP-0421
occupant-id (only from rooms that vouch for it), and ``stanza_ids`` maps a room stanza-id back:

- outbound, a reply, reaction, retraction or read marker in a room names the stanza-id when known, else
  the plain id (a reply then has no ``to``);
- inbound, a reply, reaction, retraction, correction, marker or moderation naming a room stanza-id is
  mapped back to the message's ``remote_id``; an unknown id is passed on as it is;
- ``authorship.py`` checks a retraction or correction against the remembered author. The first author of
  an id keeps it: in a room anyone can send a message reusing another's id.

**Reaction sets.** XEP-0444 sends a sender's whole set each time; the canonical events are per emoji. The
map ``reactions`` keeps the last set per (conversation, message, sender): inbound, what is missing from a
new set becomes ``removed`` (REMOVE events); outbound, ``react`` sends our set with one emoji changed. A
forgotten set (never seen, or dropped) removes nothing inbound, and outbound replaces our other reactions.

Messages older than the maps hold are looked up in the core's store (``ctx.messages``): it knows the
author of every message the account saw, though not the room's stanza-id or the occupant-id. Our own
sends are left out of that fallback (their stored sender is not our occupant JID).

Each map is written key by key as messages arrive, so a crash loses nothing, and holds at most ``LIMIT``
messages or ``reaction_sets`` sets (least recently used dropped first, across restarts too). Older
versions kept the ids in a ring of ``ids:N`` keys and the sets in ``reaction-sets:N`` buckets;
``import_legacy`` moves those into the maps once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from slixmpp import JID
from slixmpp.jid import InvalidJID

from msgr_bridge.sdk.message_ids import MemoryMessageIds, MessageIds
from msgr_bridge.sdk.state import KeyedStateStore

LIMIT = 5000
MAX_KEY = 400
"""Longer keys (ids come from the wire) are stored by their hash: a database index has a size limit."""
MAPPED = ("reply_to", "retract", "replace")
MAPPED_SUB = ("reactions", "marker", "moderated")

Ident = tuple[str, str, str]
"""(conversation, message id, sender): whose reaction set on which message."""


class Known(NamedTuple):
    """What is remembered of one message."""

    author: str
    stanza_id: str | None = None
    occupant_id: str | None = None


def key(*parts: str) -> str:
    joined = "\n".join(parts)  # no JID holds a line break
    if len(joined) <= MAX_KEY:
        return joined
    return "#" + hashlib.blake2b(joined.encode(), digest_size=16).hexdigest()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


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


def reaction_ident(payload: Mapping[str, Any], own_jid: str) -> Ident | None:
    """Whose set a reactions payload carries: in a room the occupant, in a chat the bare JID; ours as us."""
    sender = payload.get("from")
    reactions = payload.get("reactions")
    target = reactions.get("id") if isinstance(reactions, Mapping) else None
    if not isinstance(sender, str) or not isinstance(target, str):
        return None
    if payload.get("self"):
        groupchat = payload.get("type") == "groupchat"
        conversation = JID(sender).bare if groupchat else str(payload.get("to") or "")
        return JID(conversation).bare, target, own_jid
    if payload.get("type") == "groupchat":
        return JID(sender).bare, target, sender
    return JID(sender).bare, target, JID(sender).bare


class MessageMemory:
    """The remembered ids, authors and reaction sets of one account (one instance per connector)."""

    def __init__(
        self,
        state: KeyedStateStore,
        messages: MessageIds | None = None,
        *,
        limit: int = LIMIT,
        reaction_sets: int = 8192,
    ) -> None:
        self.state = state
        self.stored: MessageIds = messages if messages is not None else MemoryMessageIds()
        self.messages = state.map("messages", max_entries=limit)
        self.stanza_ids = state.map("stanza_ids", max_entries=limit)
        self.reactions = state.map("reactions", max_entries=reaction_sets)
        self._lock = asyncio.Lock()
        """Orders read-then-write changes (the first author rule, reaction sets)."""

    async def remember(
        self,
        conversation: str,
        msg_id: str,
        author: str,
        stanza_id: str | None = None,
        occupant_id: str | None = None,
    ) -> None:
        async with self._lock:
            old = await self.known(conversation, msg_id)
            if old is not None and old.author != author:
                return  # another sender reusing a remembered id: the first author keeps it
            if old is not None:
                stanza_id, occupant_id = stanza_id or old.stanza_id, occupant_id or old.occupant_id
            new = Known(author, stanza_id, occupant_id)
            if new != old:
                await self.messages.set(key(conversation, msg_id), list(new))
            if new.stanza_id and (old is None or old.stanza_id != new.stanza_id):
                await self.stanza_ids.set(key(conversation, new.stanza_id), msg_id)

    async def known(self, conversation: str, msg_id: str) -> Known | None:
        raw = await self.messages.get(key(conversation, msg_id))
        if not isinstance(raw, list) or len(raw) != 3 or _str(raw[0]) is None:
            return None  # never seen, dropped, or junk
        return Known(raw[0], _str(raw[1]), _str(raw[2]))

    async def canonical(self, conversation: str, ref: Any) -> Any:
        """The ``remote_id`` of the message a room stanza-id ``ref`` belongs to; else ``ref`` unchanged."""
        if isinstance(ref, str) and ref:
            mapped = await self.stanza_ids.get(key(conversation, ref))
            if isinstance(mapped, str) and mapped:
                return mapped
        return ref

    async def _stored(self, conversation: str, msg_id: str) -> Known | None:
        """The author of an older message from the core's store; None for our own sends and the unknown."""
        ref = await self.stored.by_remote(conversation, msg_id)
        if ref is None or ref.txn_id is not None or not ref.sender_id:
            return None
        return Known(ref.sender_id)

    async def original(self, conversation: str, ref: str) -> Known | None:
        """What is remembered of the message ``ref`` names: its id, or (in a room) its stanza-id."""
        known = await self.known(conversation, ref)
        if known is not None:
            return known
        msg_id = await self.canonical(conversation, ref)
        if msg_id != ref and (known := await self.known(conversation, msg_id)) is not None:
            return known
        return await self._stored(conversation, msg_id)

    async def outbound(self, conversation: str, remote_id: str, groupchat: bool) -> tuple[str, str | None]:
        """(the id an outbound reply, reaction, retraction or marker names, the author or None)."""
        known = await self.known(conversation, remote_id) or await self._stored(conversation, remote_id)
        if known is None:
            return remote_id, None
        return (known.stanza_id or remote_id) if groupchat else remote_id, known.author

    async def observe(self, payload: Mapping[str, Any], own_jid: str) -> Mapping[str, Any]:
        """Remember a captured message payload; returns it with the ids it names mapped to ``remote_id``s
        (``reply_to``, ``retract``, ``replace``; the ``id`` of ``reactions``, ``marker``, ``moderated``)."""
        where = place(payload, own_jid) if payload.get("kind") is None else None
        if where is None:
            return payload
        conversation, author = where
        mapped: dict[str, Any] = {}
        for field in MAPPED:
            if (ref := payload.get(field)) != (canonical := await self.canonical(conversation, ref)):
                mapped[field] = canonical
        for field in MAPPED_SUB:
            sub = payload.get(field)
            if isinstance(sub, Mapping) and (
                (ref := sub.get("id")) != (canonical := await self.canonical(conversation, ref))
            ):
                mapped[field] = {**sub, "id": canonical}
        if mapped:
            payload = {**payload, **mapped}
        # a retraction carries a fallback body ("this message was retracted"): not a message to remember
        has_content = payload.get("body") is not None and not any(payload.get(f) for f in MAPPED[1:])
        if has_content and not payload.get("moderated") and (msg_id := _str(payload.get("id"))):
            await self.remember(
                conversation,
                msg_id,
                author,
                _str(payload.get("stanza_id")),
                _str(payload.get("occupant_id")),
            )
        return payload

    async def change_reactions(
        self, ident: Ident, new: Callable[[list[str] | None], list[str]]
    ) -> tuple[list[str] | None, list[str]]:
        """Replace a reaction set with ``new(old)``; returns (old, new). ``old`` is None when not
        remembered. An empty set is deleted (it means the same as a forgotten one)."""
        async with self._lock:
            raw = await self.reactions.get(key(*ident))
            old = raw if isinstance(raw, list) and all(isinstance(v, str) for v in raw) else None
            values = list(dict.fromkeys(new(old)))
            if values and values != old:
                await self.reactions.set(key(*ident), values)
            elif not values and old is not None:
                await self.reactions.delete(key(*ident))
            return old, values

    async def import_legacy(self) -> int:
        """Move what older versions stored (the ``ids:N`` ring, ``reaction-sets:N`` buckets) into the maps,
        oldest first, then delete it; returns how many entries moved. Junk is skipped."""
        moved = 0
        rings = await self.state.list("ids:")
        segments = sorted(
            (v["seq"], v["entries"])
            for v in rings.values()
            if isinstance(v, dict) and isinstance(v.get("seq"), int) and isinstance(v.get("entries"), list)
        )
        for _seq, entries in segments:
            for raw in entries:
                item = [*raw, None][:5] if isinstance(raw, list) and len(raw) in (4, 5) else []
                if len(item) == 5 and all(_str(v) for v in item[:3]):
                    await self.remember(item[0], item[1], item[2], _str(item[3]), _str(item[4]))
                    moved += 1
        buckets = await self.state.list("reaction-sets:")
        for bucket in buckets.values():  # within a bucket the most recent set comes first
            for raw in reversed(bucket if isinstance(bucket, list) else []):
                ok = isinstance(raw, list) and len(raw) == 4 and all(_str(v) for v in raw[:3])
                if ok and isinstance(raw[3], list) and raw[3] and all(isinstance(v, str) for v in raw[3]):
                    await self.reactions.set(key(*raw[:3]), raw[3])
                    moved += 1
        for old_key in [*rings, *buckets]:
            await self.state.delete(old_key)
        return moved


__all__ = ["LIMIT", "Ident", "Known", "MessageMemory", "place", "reaction_ident"]
