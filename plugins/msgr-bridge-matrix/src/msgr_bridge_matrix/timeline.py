"""From ``/sync`` and ``/messages`` events to raw payloads, remembering what one event does not say:

members' display names (``sender_name``), which rooms are direct chats (``m.direct``), who was typing (the
payload adds who typed before, so the conversion emits "started" and "stopped"), for this session; and the
reactions seen (``SeenReactions``: a redacted reaction no longer says what it was, and removing our own
redacts the right event), in two bounded maps of ``ctx.state`` written key by key, across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from msgr_bridge.sdk.state import KeyedStateStore

MAX_REMEMBERED_REACTIONS = 5000
"""Reactions remembered for turning redactions into removals; older ones fall back to ``Delete``."""


def own_reaction_key(room_id: str, target_id: str, key: str) -> str:
    return f"{room_id}\n{target_id}\n{key}"


def own_invite_member(invite: object, self_id: str) -> Mapping[str, Any] | None:
    """Our own ``m.room.member`` event in an invite's stripped state (None when it has none)."""
    state = invite.get("invite_state") if isinstance(invite, Mapping) else None
    events = state.get("events") if isinstance(state, Mapping) else None
    for event in events if isinstance(events, list) else []:
        if (
            isinstance(event, Mapping)
            and event.get("type") == "m.room.member"
            and event.get("state_key") == self_id
        ):
            return event
    return None


class SeenReactions:
    """Reactions seen, in two bounded maps of the connector's state, least recently used dropped first.

    ``reactions``: reaction event id -> ``[target id, key, sender]``; ``own_reactions``: ``room, target,
    key`` (``own_reaction_key``) -> our reaction event id.
    """

    def __init__(self, state: KeyedStateStore, self_id: str) -> None:
        self.state = state
        self.self_id = self_id
        self.seen = state.map("reactions", max_entries=MAX_REMEMBERED_REACTIONS)
        self.own = state.map("own_reactions", max_entries=MAX_REMEMBERED_REACTIONS)

    async def adopt_saved_blobs(self) -> None:
        """Move the whole-value ``reactions`` / ``own_reactions`` keys of earlier versions into the maps."""
        for key, target in (("reactions", self.seen), ("own_reactions", self.own)):
            saved = await self.state.get(key)
            if isinstance(saved, dict):
                for name, value in list(saved.items())[-MAX_REMEMBERED_REACTIONS:]:
                    if isinstance(name, str) and name and (isinstance(value, str) or _is_seen(value)):
                        await target.set(name, value)
            if saved is not None:
                await self.state.delete(key)

    async def remember(self, event_id: str, target: str, key: str, sender: str, room_id: str) -> None:
        await self.seen.set(event_id, [target, key, sender])
        if sender == self.self_id:
            await self.own.set(own_reaction_key(room_id, target, key), event_id)

    async def forget(self, event_id: str, room_id: str) -> list[str] | None:
        """What the reaction ``event_id`` was (None when never seen or long forgotten); forgotten now."""
        seen = await self.seen.get(event_id)
        if not _is_seen(seen):
            return None
        await self.seen.delete(event_id)
        own_key = own_reaction_key(room_id, seen[0], seen[1])
        if await self.own.get(own_key) == event_id:
            await self.own.delete(own_key)
        return list(seen)

    async def own_reaction(self, room_id: str, target: str, key: str) -> str | None:
        found = await self.own.get(own_reaction_key(room_id, target, key))
        return found if isinstance(found, str) else None

    async def forget_own(self, room_id: str, target: str, key: str) -> None:
        """Our reaction is being removed; its seen entry stays until the redaction comes back, so the
        redaction's echo converts to a removal too."""
        await self.own.delete(own_reaction_key(room_id, target, key))


def _is_seen(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)


class Timeline:
    def __init__(self, self_id: str, log: Any, reactions: SeenReactions) -> None:
        self.self_id = self_id
        self.log = log
        self.reactions = reactions
        self.names: dict[str, dict[str, str]] = {}
        self.direct: set[str] = set()
        self.typing: dict[str, list[str]] = {}

    # --- state ---------------------------------------------------------------------------------------

    def note_state(self, room_id: str, event: Mapping[str, Any]) -> None:
        """Learn display names from an ``m.room.member`` state event (timeline or state section)."""
        if event.get("type") != "m.room.member" or not isinstance(event.get("state_key"), str):
            return
        content = event.get("content")
        content = content if isinstance(content, Mapping) else {}
        members = self.names.setdefault(room_id, {})
        user = event["state_key"]
        name = content.get("displayname")
        if content.get("membership") == "join" and isinstance(name, str) and name:
            members[user] = name
        elif content.get("membership") in {"leave", "ban"}:
            members.pop(user, None)

    def note_account_data(self, events: Iterable[Any]) -> None:
        for event in events:
            if isinstance(event, Mapping) and event.get("type") == "m.direct":
                self.set_direct(event.get("content"))

    def set_direct(self, content: Any) -> None:
        if isinstance(content, Mapping):
            self.direct = {
                r
                for rooms in content.values()
                if isinstance(rooms, list)
                for r in rooms
                if isinstance(r, str)
            }

    # --- payloads ------------------------------------------------------------------------------------

    async def timeline_payload(self, room_id: str, event: Any) -> dict[str, Any] | None:
        """The raw payload for one timeline event, or None for what the bridge skips (encrypted events)."""
        if not isinstance(event, Mapping):
            return None
        etype = event.get("type")
        if etype == "m.room.encrypted":
            self.log.info(
                "matrix.encrypted_event_skipped",
                room_id=room_id,
                event_id=event.get("event_id"),
                reason="end-to-end encryption is not supported by this connector (e2ee=False)",
            )
            return None
        self.note_state(room_id, event)
        payload: dict[str, Any] = {"room_id": room_id, "event": dict(event)}
        sender = event.get("sender")
        if isinstance(sender, str) and (name := self.names.get(room_id, {}).get(sender)):
            payload["sender_name"] = name
        content = event.get("content")
        content = content if isinstance(content, Mapping) else {}
        if etype == "m.reaction":
            rel = content.get("m.relates_to")
            if isinstance(rel, Mapping) and rel.get("rel_type") == "m.annotation":
                event_id, target, key = event.get("event_id"), rel.get("event_id"), rel.get("key")
                if isinstance(event_id, str) and isinstance(target, str) and isinstance(key, str) and sender:
                    await self.reactions.remember(event_id, target, key, str(sender), room_id)
        elif etype == "m.room.redaction":
            target = content.get("redacts") or event.get("redacts")
            if isinstance(target, str) and (seen := await self.reactions.forget(target, room_id)) is not None:
                payload["redacted_reaction"] = {"target_id": seen[0], "key": seen[1], "sender": seen[2]}
        return payload

    def ephemeral_payloads(self, room_id: str, events: Iterable[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            if not isinstance(event, Mapping):
                continue
            if event.get("type") == "m.typing":
                content = event.get("content")
                users = content.get("user_ids") if isinstance(content, Mapping) else None
                if not isinstance(users, list):
                    continue
                before = self.typing.get(room_id, [])
                self.typing[room_id] = [u for u in users if isinstance(u, str)]
                out.append({"room_id": room_id, "event": dict(event), "typing_before": before})
            elif event.get("type") == "m.receipt":
                out.append({"room_id": room_id, "event": dict(event)})
        return out

    def invite_payload(self, room_id: str, invite: Mapping[str, Any]) -> dict[str, Any] | None:
        """Our own membership event from an invite's stripped state (it has no event id)."""
        event = own_invite_member(invite, self.self_id)
        return None if event is None else {"room_id": room_id, "event": dict(event)}
