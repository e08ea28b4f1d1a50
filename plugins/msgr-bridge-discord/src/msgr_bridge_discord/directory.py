"""What the bot knows of its servers: channels (kept in the account's state across restarts, because a
RESUME brings no GUILD_CREATE), each server's members, and the raw payload wrapper ``convert`` reads.

A member list is *certain* when it holds as many members as the server has (``member_count``); Discord sends
only part of a large server's list, and nothing after a RESUME, so then ``sync_state`` lists no members
for its channels and says the snapshot is partial, and the core keeps who it knew.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .convert import PAYLOAD_VERSION
from .outbound import Outbound

TEXT_TYPES = frozenset({0, 1, 3, 5, 10, 11, 12})
THREAD_TYPES = frozenset({10, 11, 12})
CHANNEL_STATE_KEY = "channels"
MAX_CHANNELS = 5000
MAX_MEMBERS_PER_GUILD = 1000
"""Members kept per server (a larger server's list is not certain; changes still arrive live)."""


class Directory(Outbound):
    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.channels: dict[str, dict[str, Any]] = {}
        self.guild_channels: dict[str, list[str]] = {}
        self.members: dict[str, dict[str, str | None]] = {}
        """Server id -> user id -> display name (bounded per server)."""
        self.member_counts: dict[str, int] = {}
        self._last_seen: dict[str, str] = {}
        """Channel id -> the newest message id the core committed there."""
        self._channels_changed = False

    def load_channels(self, saved: Any) -> None:
        self.channels, self.guild_channels = {}, {}
        for cid, ch in (saved or {}).items() if isinstance(saved, dict) else ():
            if isinstance(ch, dict) and ch.get("type") in TEXT_TYPES:
                self._add_channel(str(cid), ch)
        self._channels_changed = False

    async def save_channels(self) -> None:
        if self._channels_changed:
            await self.ctx.state.set(CHANNEL_STATE_KEY, self.channels)
            self._channels_changed = False

    def _add_channel(self, cid: str, ch: Mapping[str, Any]) -> None:
        entry = {k: ch.get(k) for k in ("type", "guild_id", "parent_id", "name")}
        if self.channels.get(cid) != entry and (cid in self.channels or len(self.channels) < MAX_CHANNELS):
            self.channels[cid] = entry
            self._channels_changed = True
        gid = entry["guild_id"]
        if gid is not None and cid not in self.guild_channels.setdefault(str(gid), []):
            self.guild_channels[str(gid)].append(cid)

    def members_certain(self, guild_id: str) -> bool:
        known = self.members.get(guild_id)
        return known is not None and len(known) == self.member_counts.get(guild_id, -1)

    def _member(self, gid: str, d: Mapping[str, Any]) -> None:
        known = self.members.setdefault(gid, {})
        user = d.get("user") or {}
        if "id" in user and (str(user["id"]) in known or len(known) < MAX_MEMBERS_PER_GUILD):
            known[str(user["id"])] = d.get("nick") or user.get("global_name") or user.get("username")

    def learn(self, event: Any, d: Mapping[str, Any]) -> None:
        """Follow one dispatch: channels, threads, DMs, members."""
        gid = str(d.get("guild_id"))
        if event == "GUILD_CREATE":
            gid = str(d.get("id"))
            for ch in [*d.get("channels", []), *d.get("threads", [])]:
                self.learn("CHANNEL_CREATE", {**ch, "guild_id": d.get("id")})
            self.members[gid] = {}
            for member in d.get("members", []):
                self._member(gid, member)
            if isinstance(d.get("member_count"), int):
                self.member_counts[gid] = d["member_count"]
        elif event == "GUILD_DELETE" and not d.get("unavailable"):  # the bot left or was removed
            gid = str(d.get("id"))
            for cid in self.guild_channels.pop(gid, []):
                self.learn("CHANNEL_DELETE", {"id": cid})
            self.members.pop(gid, None)
            self.member_counts.pop(gid, None)
        elif event in ("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE"):
            new = str((d.get("user") or {}).get("id")) not in self.members.get(gid, {})
            self._member(gid, d)
            if event == "GUILD_MEMBER_ADD" and new and gid in self.member_counts:
                self.member_counts[gid] += 1
        elif event == "GUILD_MEMBER_REMOVE":
            self.members.get(gid, {}).pop(str((d.get("user") or {}).get("id")), None)
            if gid in self.member_counts:
                self.member_counts[gid] -= 1
        elif event in ("CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE", "THREAD_UPDATE"):
            if d.get("type") in TEXT_TYPES:
                cid = str(d["id"])
                self._add_channel(cid, d)
                # A channel new to us: what it had before is backfill, not something we missed.
                self._last_seen.setdefault(cid, str(d.get("last_message_id") or "0"))
        elif event in ("CHANNEL_DELETE", "THREAD_DELETE"):
            if self.channels.pop(str(d.get("id")), None) is not None:
                self._channels_changed = True
            self._last_seen.pop(str(d.get("id")), None)
        elif event == "MESSAGE_CREATE" and d.get("guild_id") is None and str(d.get("id", "")).isdigit():
            cid = str(d.get("channel_id"))
            if cid not in self.channels:
                self._add_channel(cid, {"type": 1})
                self._last_seen.setdefault(cid, str(int(d["id"]) - 1))

    def wrap(self, event: str, d: Mapping[str, Any]) -> dict[str, Any]:
        """The raw payload ``convert`` reads (see convert.py)."""
        payload: dict[str, Any] = {
            "v": PAYLOAD_VERSION,
            "self_id": self.self_id,
            "t": event,
            "d": d,
            "received_at": datetime.now(UTC).isoformat(),
        }
        channel = self.channels.get(str(d.get("channel_id")))
        if channel is not None and channel["type"] in THREAD_TYPES:
            payload["thread"] = True
        if event.startswith("MESSAGE_") and d.get("webhook_id") is not None:
            payload["own_webhook"] = str(d["webhook_id"]) in self.own_webhooks
        if event.startswith("GUILD_MEMBER_"):
            gid = str(d.get("guild_id"))
            payload["channels"] = [
                c for c in self.guild_channels.get(gid, []) if self.channels.get(c, {}).get("type") in (0, 5)
            ]
        return payload

    # --- catch-up ------------------------------------------------------------------------------------
