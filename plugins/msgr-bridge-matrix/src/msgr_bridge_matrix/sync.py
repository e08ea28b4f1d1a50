"""The inbound read path: ``/sync`` answers turned into raw payloads, room snapshots, and invites joined.

``sync_payloads``: one ``/sync`` answer into raw payloads for the sink, gaps in limited timelines closed
first through ``/messages`` (shared by ``sync_state``, as history, and ``subscribe``, live).

``room_snapshot``: the joined rooms (conversations) and their members (contacts). A room in the user's
``m.direct`` account data is a direct conversation, named after the other member when it has no
``m.room.name``; every other room is a group. One ``/state`` call per room gives name, topic and members.

``InviteJoiner``: auto-join of invites from the inviters the owner lists in ``auto_join_from``. By default
none is joined, each only reported (a ``MembershipChange`` with action ``invite``); an invite from someone
not listed is logged (``matrix.invite_not_auto_joined``) and left alone. An incremental ``/sync`` lists an
invite only when it is new, so each listed is tried; a full one lists every standing invite, so those
already refused are skipped. A refused join is logged once and given up; a transient failure is retried
after the next sync answers, at most ``MAX_JOIN_ATTEMPTS`` times. A direct-chat invite's room is added to
our ``m.direct`` under the inviter. Pending and refused invites are bounded ``ctx.state`` maps written key by
key, so a restart neither forgets a pending join nor retries a refused one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.types import EventType, RoomID

from msgr_bridge.errors import PermanentError, TransientError
from msgr_bridge.schema import Account, Contact, Conversation, ConversationKind
from msgr_bridge.sdk.state import KeyedStateStore

from . import client as wire
from .timeline import Timeline, own_invite_member


async def sync_payloads(
    api: Callable[[], Client],
    memory: Timeline,
    resp: Mapping[str, Any],
    since: str | None,
    *,
    live: bool,
    max_backfill: int,
    log: Any,
) -> tuple[list[Any], bool]:
    """Raw payloads of one sync answer, in order per room; False when a gap could not be closed. Typing
    only when ``live`` (as history it is stale). ``api`` gives the client per request, so a disconnect
    during a backfill fails the next page as "not connected" instead of using a closed session."""
    out: list[Any] = []
    complete = True
    account_data = resp.get("account_data", {}).get("events", [])
    memory.note_account_data(account_data if isinstance(account_data, list) else [])
    rooms = resp.get("rooms", {})
    for section in ("join", "leave"):
        for room_id, room in (rooms.get(section) or {}).items():
            for event in (room.get("state") or {}).get("events", []):
                memory.note_state(room_id, event)
            timeline = room.get("timeline") or {}
            events = list(timeline.get("events") or [])
            if timeline.get("limited") and since and timeline.get("prev_batch"):
                gap, closed = await backfill(
                    api, room_id, timeline["prev_batch"], since, budget=max_backfill, log=log
                )
                events = gap + events
                complete = complete and closed
            for event in events:
                if (payload := await memory.timeline_payload(room_id, event)) is not None:
                    out.append(payload)
            ephemeral = (room.get("ephemeral") or {}).get("events") or []
            out += [
                p
                for p in memory.ephemeral_payloads(room_id, ephemeral)
                if live or p["event"].get("type") != "m.typing"
            ]
    for room_id, invite in (rooms.get("invite") or {}).items():
        if (payload := memory.invite_payload(room_id, invite)) is not None:
            out.append(payload)
    return out, complete


async def backfill(
    api: Callable[[], Client], room_id: str, start: str, until: str, *, budget: int, log: Any
) -> tuple[list[Any], bool]:
    """Events between the sync token ``until`` and a limited timeline's ``prev_batch``, oldest first.

    At most ``budget`` events: a room that was very busy while we were away costs bounded time, and the
    snapshot then says it is incomplete instead of stalling the connect.
    """
    token = start
    chunks: list[Any] = []
    path = Path.v3.rooms[room_id].messages
    while budget > 0:
        query = {"dir": "b", "from": token, "to": until, "limit": str(min(100, budget))}
        page = await wire.raw(api(), Method.GET, path, "history backfill", query=query)
        chunk = page.get("chunk") or []
        chunks += chunk
        budget -= len(chunk)
        if not chunk or not page.get("end"):
            return list(reversed(chunks)), True
        token = page["end"]
    log.warning("matrix.backfill_truncated", room_id=room_id, fetched=len(chunks))
    return list(reversed(chunks)), False


async def room_snapshot(
    client: Client, account: Account, self_id: str, memory: Timeline
) -> tuple[tuple[Conversation, ...], tuple[Contact, ...]]:
    try:
        async with wire.wire_errors("m.direct lookup"):
            memory.set_direct(await client.get_account_data(EventType.DIRECT))
    except PermanentError:
        pass  # M_NOT_FOUND: the user has no direct chats yet
    async with wire.wire_errors("joined rooms"):
        joined = await client.get_joined_rooms()
    conversations: list[Conversation] = []
    contacts: dict[str, Contact] = {}
    for room_id in joined:
        state = await wire.raw(client, Method.GET, Path.v3.rooms[room_id].state, "room state")
        name = topic = None
        members: dict[str, str | None] = {}
        for event in state if isinstance(state, list) else []:
            content: dict[str, Any] = event.get("content") or {}
            match event.get("type"):
                case "m.room.name":
                    name = content.get("name") or None
                case "m.room.topic":
                    topic = content.get("topic") or None
                case "m.room.member" if content.get("membership") == "join":
                    members[event["state_key"]] = content.get("displayname") or None
                    memory.note_state(room_id, event)
        is_direct = room_id in memory.direct
        if is_direct and name is None:
            others = [n or u for u, n in members.items() if u != self_id]
            name = ", ".join(sorted(others)) or None
        conversations.append(
            Conversation(
                network=account.network,
                account_id=account.id,
                remote_id=room_id,
                name=name,
                topic=topic,
                type=ConversationKind.DIRECT if is_direct else ConversationKind.GROUP,
                members=tuple(sorted(members)),
            )
        )
        for user_id, display in members.items():
            if user_id not in contacts or (display and not contacts[user_id].display_name):
                contacts[user_id] = Contact(
                    network=account.network,
                    account_id=account.id,
                    remote_id=user_id,
                    display_name=display,
                    is_self=user_id == self_id,
                )
    return tuple(conversations), tuple(contacts.values())


# --- invites -----------------------------------------------------------------------------------------------

MAX_JOIN_ATTEMPTS = 3
MAX_REFUSED = 500
MAX_PENDING = 200
"""Invites waiting to be joined (least recently invited dropped first, counted and logged)."""


def inviter_allowed(inviter: str | None, patterns: Iterable[str]) -> bool:
    """Whether ``inviter`` matches one of the ``auto_join_from`` patterns (an unknown inviter never does)."""
    if not inviter:
        return False
    server = inviter.partition(":")[2]
    return any(p == "*" or p == inviter or (p.startswith("*:") and p[2:] == server) for p in patterns)


class InviteJoiner:
    def __init__(
        self, self_id: str, log: Any, state: KeyedStateStore, *, allowed: Iterable[str] = ()
    ) -> None:
        self.self_id = self_id
        self.log = log
        self.state = state
        self.allowed = tuple(allowed)
        self.pending = state.map("invites_pending", max_entries=MAX_PENDING)
        """room id -> ``{"attempts": failed attempts so far, "inviter": user id, "direct": bool}``"""
        self.refused = state.map("invites_refused", max_entries=MAX_REFUSED)
        """room id -> why the join was given up"""
        self._pending_ids: set[str] = set()

    async def load(self) -> None:
        """Read the pending invites (and move an older version's ``invites`` key into the maps, once)."""
        saved = await self.state.get("invites")
        if isinstance(saved, Mapping):
            for name, target in (("pending", self.pending), ("refused", self.refused)):
                entries = saved.get(name)
                for room_id, value in (entries if isinstance(entries, Mapping) else {}).items():
                    await target.set(room_id, value)
            await self.state.delete("invites")
        self._pending_ids = set(await self.pending.list())

    async def on_sync(self, client: Client, rooms: Mapping[str, Any], *, full: bool) -> bool:
        """Queue one sync answer's invites and try the pending ones; True when a room was joined."""
        await self.note_sync(rooms, full=full)
        return await self.join_pending(client)

    async def note_sync(self, rooms: Mapping[str, Any], *, full: bool) -> None:
        """Queue the invites of one ``/sync`` answer's ``rooms``; forget pending rooms no longer invited."""
        for section in ("join", "leave"):  # joined elsewhere, or the invite was rescinded
            for room_id in (rooms.get(section) or {}).keys() & self._pending_ids:
                await self._forget(room_id)
        invites = rooms.get("invite") or {}
        dropped = await self.pending.dropped() if invites else 0
        for room_id, invite in invites.items():
            if full and await self.refused.get(room_id) is not None:
                continue
            info = self._invite_info(invite)
            if not inviter_allowed(info["inviter"], self.allowed):
                self.log.info(
                    "matrix.invite_not_auto_joined",
                    room_id=room_id,
                    inviter=info["inviter"],
                    action="reported only; list the inviter in auto_join_from to join such invites",
                )
                continue
            await self.refused.delete(room_id)
            await self.pending.set(room_id, {"attempts": 0, **info})
            self._pending_ids.add(room_id)
        if invites and (now := await self.pending.dropped()) > dropped:
            self._pending_ids &= set(await self.pending.list())
            self.log.warning(
                "matrix.invite_pending_dropped",
                dropped=now,
                reason=f"more than {MAX_PENDING} invites waiting to be joined",
            )

    def _invite_info(self, invite: Any) -> dict[str, Any]:
        """Who invited us and whether as a direct chat, from our member event in the stripped state."""
        event = own_invite_member(invite, self.self_id)
        content = event.get("content") if event is not None else None
        sender = event.get("sender") if event is not None else None
        direct = isinstance(content, Mapping) and content.get("is_direct") is True
        return {"inviter": sender if isinstance(sender, str) else None, "direct": direct}

    async def _forget(self, room_id: str) -> None:
        await self.pending.delete(room_id)
        self._pending_ids.discard(room_id)

    async def join_pending(self, client: Client) -> bool:
        """Try every pending invite once; True when one was joined. Never raises for a refused or failed
        join (only for a refused access token)."""
        joined = False
        for room_id in sorted(self._pending_ids):
            info = await self.pending.get(room_id)
            if not isinstance(info, Mapping) or not inviter_allowed(info.get("inviter"), self.allowed):
                await self._forget(room_id)  # saved before the setting changed, or dropped meanwhile
                continue
            try:
                async with wire.wire_errors("joining an invited room"):
                    await client.join_room_by_id(RoomID(room_id))
            except PermanentError as exc:
                await self._give_up(room_id, info, f"the homeserver refused the join: {exc.message}")
            except TransientError as exc:
                attempts = int(info.get("attempts", 0)) + 1
                if attempts >= MAX_JOIN_ATTEMPTS:
                    await self._give_up(room_id, info, f"{attempts} attempts failed, last: {exc.message}")
                else:
                    await self.pending.set(room_id, {**info, "attempts": attempts})
                    self.log.info(
                        "matrix.invite_join_retry", room_id=room_id, error=exc.message, attempts=attempts
                    )
            else:
                await self._forget(room_id)
                joined = True
                self.log.info("matrix.invite_joined", room_id=room_id, inviter=info.get("inviter"))
                if info.get("direct") and isinstance(inviter := info.get("inviter"), str):
                    await self._mark_direct(client, room_id, inviter)
        return joined

    async def _give_up(self, room_id: str, info: Mapping[str, Any], reason: str) -> None:
        await self._forget(room_id)
        await self.refused.set(room_id, reason)
        self.log.warning(
            "matrix.invite_join_failed",
            room_id=room_id,
            inviter=info.get("inviter"),
            reason=reason,
            action="invite left unanswered; it is not tried again unless the account is invited anew",
        )

    async def _mark_direct(self, client: Client, room_id: str, inviter: str) -> None:
        """Add ``room_id`` to our ``m.direct`` under ``inviter``; a failure costs only the direct flag."""
        current: Any
        try:
            try:
                async with wire.wire_errors("m.direct lookup"):
                    current = await client.get_account_data(EventType.DIRECT)
            except PermanentError:
                current = {}  # M_NOT_FOUND: no direct chats yet
            current = current if isinstance(current, Mapping) else {}
            direct = {k: list(v) for k, v in current.items() if isinstance(v, list)}
            rooms = direct.setdefault(inviter, [])
            if room_id not in rooms:
                rooms.append(room_id)
                async with wire.wire_errors("m.direct update"):
                    await client.set_account_data(EventType.DIRECT, direct)
        except (PermanentError, TransientError) as exc:
            self.log.warning("matrix.direct_mark_failed", room_id=room_id, error=exc.message)
