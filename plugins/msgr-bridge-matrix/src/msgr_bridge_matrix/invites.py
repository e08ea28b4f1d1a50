"""Auto-join of room invites from the inviters the owner lists in ``auto_join_from`` (``config.py``).

By default no invite is joined: each is only reported (a ``MembershipChange`` with action ``invite``). An
invite from someone not listed is logged (``matrix.invite_not_auto_joined``) and left alone, so a spammer
can make the bridge join nothing. An incremental ``/sync`` lists an invite only when it is new, so each one
listed is tried; a full ``/sync`` (no token) lists every standing invite, so the ones already refused are
skipped there.

A refused join (the invite was rescinded, the room is gone) is logged once and given up; a transient failure
is tried again after the next sync answers, at most ``MAX_JOIN_ATTEMPTS`` times (the long poll is the
back-off). When the invite says ``is_direct``, the joined room is added to our ``m.direct`` under the
inviter, as Matrix clients do. Pending and refused invites are bounded maps of ``ctx.state``
(``invites_pending``, ``invites_refused``), written key by key, so a restart neither forgets a pending join
nor retries a refused one, and a flood of invites cannot grow them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mautrix.client import Client
from mautrix.types import EventType, RoomID

from msgr_bridge.errors import PermanentError, TransientError
from msgr_bridge.sdk.state import KeyedStateStore

from . import client as wire
from .timeline import own_invite_member

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
