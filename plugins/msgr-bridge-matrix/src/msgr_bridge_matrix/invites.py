"""Auto-join of room invites: the account joins the rooms it is invited to by people its owner allows.

Who may pull the account into a room is the owner's choice: ``auto_join_from`` (a per-account setting, or
``[networks.matrix]`` for every account) lists inviters as full user ids (``@alice:example.org``),
``*:example.org`` (anyone on that homeserver) or ``*`` (anyone). The default is empty: no invite is joined
by itself, every one is only reported (a ``MembershipChange`` with action ``invite``) so the owner can
accept it in a Matrix client. An invite from someone not listed is logged (``matrix.invite_not_auto_joined``)
and left alone; a spammer cannot make the bridge join rooms, nor grow the pending map: it holds at most
``MAX_PENDING`` invites, least recently invited dropped first, each drop counted (``dropped``) and logged.

Which invites a sync answer lists decides what is tried. An incremental ``/sync`` lists an invite in
``rooms.invite`` only when it is new since the token, so every one it lists is tried (a re-invite after an
earlier refusal too). A full ``/sync`` (no token: the first connect, or a refused token) lists every invite
still standing, so the ones already refused are skipped there: a dead invite is tried once, not on every
fresh start.

A refused join (``M_FORBIDDEN``, ``M_NOT_FOUND``: the invite was rescinded, the room is gone or empty) is
logged once with the homeserver's reason and given up. A transient failure (homeserver unreachable, rate
limited) is tried again after the next sync answers, at most ``MAX_JOIN_ATTEMPTS`` times in all; the
back-off is the long poll between syncs, never a sleep here. Only a refused access token ends the sync
loop, as it would on any other call.

When an invite's member event says ``is_direct``, the joined room is added to the account's own
``m.direct`` under the inviter (what Matrix clients do on accepting a direct chat), so the snapshot lists it
as a direct conversation like the other direct chats.

The pending and refused maps are kept in the connector's state store (``invites``), written with the sync
token, so a restart neither forgets a pending join nor retries a refused one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mautrix.client import Client
from mautrix.types import EventType, RoomID

from msgr_bridge.connectors.protocol import ConnectorStateStore
from msgr_bridge.errors import PermanentError, TransientError

from . import client as wire
from .config import parse_auto_join_from
from .timeline import own_invite_member

__all__ = ["MAX_PENDING", "InviteJoiner", "inviter_allowed", "parse_auto_join_from"]

MAX_JOIN_ATTEMPTS = 3
"""Transient join failures of one invite before it is given up (logged ``matrix.invite_join_failed``)."""
MAX_REFUSED = 500
"""Refused invites remembered (oldest forgotten first), so a full sync does not try them again."""
MAX_PENDING = 200
"""Invites waiting to be joined (least recently invited dropped first, counted in ``dropped``)."""


def inviter_allowed(inviter: str | None, patterns: Iterable[str]) -> bool:
    """Whether ``inviter`` matches one of the ``auto_join_from`` patterns (an unknown inviter never does)."""
    if not inviter:
        return False
    server = inviter.partition(":")[2]
    return any(p == "*" or p == inviter or (p.startswith("*:") and p[2:] == server) for p in patterns)


class InviteJoiner:
    def __init__(self, self_id: str, log: Any, *, allowed: Iterable[str] = ()) -> None:
        self.self_id = self_id
        self.log = log
        self.allowed = tuple(allowed)
        """``auto_join_from`` patterns: invites from anyone else are reported, never joined."""
        self.dropped = 0
        """Pending invites dropped because the map was full."""
        self.pending: dict[str, dict[str, Any]] = {}
        """room id -> ``{"attempts": failed attempts so far, "inviter": user id, "direct": bool}``"""
        self.refused: dict[str, str] = {}
        """room id -> why the join was given up"""
        self.changed = False
        self.joined: list[str] = []
        """Rooms joined since the caller last cleared this list."""

    # --- persistence ---------------------------------------------------------------------------------

    def load(self, saved: Any) -> None:
        if not isinstance(saved, Mapping):
            return
        pending, refused = saved.get("pending"), saved.get("refused")
        if isinstance(pending, Mapping):
            kept = [(k, dict(v)) for k, v in pending.items() if isinstance(v, Mapping)]
            self.pending = dict(kept[-MAX_PENDING:])
        if isinstance(refused, Mapping):
            self.refused = {k: v for k, v in refused.items() if isinstance(v, str)}

    def dump(self) -> dict[str, Any]:
        return {"pending": {k: dict(v) for k, v in self.pending.items()}, "refused": dict(self.refused)}

    # --- what a sync answer says ---------------------------------------------------------------------

    async def on_sync(
        self, client: Client, resp: Mapping[str, Any], state: ConnectorStateStore, *, full: bool
    ) -> bool:
        """Queue one sync answer's invites, try the pending ones, persist; True when a room was joined."""
        self.note_sync(resp.get("rooms") or {}, full=full)
        await self.join_pending(client)
        if self.changed:
            await state.set("invites", self.dump())
            self.changed = False
        joined, self.joined = bool(self.joined), []
        return joined

    def note_sync(self, rooms: Mapping[str, Any], *, full: bool) -> None:
        """Queue the invites of one ``/sync`` answer's ``rooms``; forget pending rooms no longer invited."""
        for section in ("join", "leave"):
            for room_id in rooms.get(section) or {}:
                if self.pending.pop(room_id, None) is not None:  # joined elsewhere, or invite rescinded
                    self.changed = True
        for room_id, invite in (rooms.get("invite") or {}).items():
            if full and room_id in self.refused:
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
            self.refused.pop(room_id, None)
            self.pending.pop(room_id, None)  # re-invited: it moves to the newest end
            self.pending[room_id] = {"attempts": 0, **info}
            self.changed = True
            while len(self.pending) > MAX_PENDING:
                dropped = next(iter(self.pending))
                del self.pending[dropped]
                self.dropped += 1
                self.log.warning(
                    "matrix.invite_pending_dropped",
                    room_id=dropped,
                    dropped=self.dropped,
                    reason=f"more than {MAX_PENDING} invites waiting to be joined",
                )

    def _invite_info(self, invite: Any) -> dict[str, Any]:
        """Who invited us and whether as a direct chat, from our member event in the stripped state."""
        event = own_invite_member(invite, self.self_id)
        if event is None:
            return {"inviter": None, "direct": False}
        content = event.get("content")
        direct = isinstance(content, Mapping) and content.get("is_direct") is True
        sender = event.get("sender")
        return {"inviter": sender if isinstance(sender, str) else None, "direct": direct}

    # --- joining -------------------------------------------------------------------------------------

    async def join_pending(self, client: Client) -> None:
        """Try every pending invite once; never raises for a refused or failed join (only for a bad token)."""
        for room_id, info in list(self.pending.items()):
            if not inviter_allowed(info.get("inviter"), self.allowed):  # saved before the setting changed
                del self.pending[room_id]
                self.changed = True
                continue
            try:
                async with wire.wire_errors("joining an invited room"):
                    await client.join_room_by_id(RoomID(room_id))
            except PermanentError as exc:
                self._give_up(room_id, info, f"the homeserver refused the join: {exc.message}")
            except TransientError as exc:
                info["attempts"] = int(info.get("attempts", 0)) + 1
                self.changed = True
                if info["attempts"] >= MAX_JOIN_ATTEMPTS:
                    self._give_up(room_id, info, f"{info['attempts']} attempts failed, last: {exc.message}")
                else:
                    self.log.info(
                        "matrix.invite_join_retry",
                        room_id=room_id,
                        error=exc.message,
                        attempts=info["attempts"],
                    )
            else:
                del self.pending[room_id]
                self.changed = True
                self.joined.append(room_id)
                self.log.info("matrix.invite_joined", room_id=room_id, inviter=info.get("inviter"))
                if info.get("direct") and isinstance(inviter := info.get("inviter"), str):
                    await self._mark_direct(client, room_id, inviter)

    def _give_up(self, room_id: str, info: Mapping[str, Any], reason: str) -> None:
        self.pending.pop(room_id, None)
        self.refused[room_id] = reason
        while len(self.refused) > MAX_REFUSED:
            self.refused.pop(next(iter(self.refused)))
        self.changed = True
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
