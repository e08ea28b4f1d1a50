"""Catch-up: the channels the bot sees and, after a fresh IDENTIFY, the history it missed.

``sync_state`` pages each channel's history after the last message the core acknowledged there (``after=``,
at most ``catchup_pages`` pages of 100, oldest first); on the first link it imports the latest
``backfill_messages`` per channel instead (``before=`` paging). History goes through the same pipeline as
live messages, so the core's dedupe drops what it already had. Also the raw payload wrapper (``wrap``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from msgr_bridge import SyncSnapshot
from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import Contact, Conversation, ConversationKind

from .convert import NETWORK, PAYLOAD_VERSION
from .outbound import Outbound

TEXT_TYPES = frozenset({0, 1, 3, 5, 10, 11, 12})
THREAD_TYPES = frozenset({10, 11, 12})
STATE_KEY = "gateway"


def _cursor(last: dict[str, str]) -> str:
    return orjson.dumps({"v": 1, "last": last}).decode()


def _cursor_map(cursor: str | None) -> dict[str, str]:
    """Channel -> newest committed message id from a cursor; an unreadable cursor counts as none."""
    try:
        value = orjson.loads(cursor) if cursor else {}
    except orjson.JSONDecodeError:
        return {}
    last = value.get("last") if isinstance(value, dict) else None
    if not isinstance(last, dict):
        return {}
    return {str(k): str(v) for k, v in last.items() if str(v).isdigit()}


class Catchup(Outbound):
    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.channels: dict[str, dict[str, Any]] = {}
        self.guild_channels: dict[str, list[str]] = {}
        self.members: dict[str, dict[str, str | None]] = {}
        """Server id -> user id -> display name (bounded per server)."""
        self._fresh = False
        """True after a fresh IDENTIFY (no RESUME): ``sync_state`` must page history."""
        self._last_seen: dict[str, str] = {}
        """Channel id -> the newest message id the core acknowledged there."""
        self._linked_before = False

    async def _save(self, *, force: bool = False, ended: bool = False) -> None:
        raise NotImplementedError

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

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        """The channels the bot sees; after a fresh IDENTIFY, what each channel got after the newest message
        the core committed there (acknowledged live, or brought by an earlier sync: ``cursor``), or the
        latest ``backfill_messages`` on the first link. The cursor maps channels to the newest message this
        snapshot brings; the core stores it only once the history is committed."""
        committed = _cursor_map(cursor)
        for cid, mid in committed.items():
            if cid in self.channels and int(mid) > int(self._last_seen.get(cid, "0")):
                self._last_seen[cid] = mid
        conversations = tuple(self._conversation(cid, ch) for cid, ch in self.channels.items())
        people = {uid: name for guild in self.members.values() for uid, name in guild.items()}
        contacts = tuple(
            Contact(
                network=NETWORK,
                account_id=self.ctx.account.id,
                remote_id=uid,
                display_name=name,
                is_self=uid == self.self_id,
            )
            for uid, name in people.items()
        )
        newest = dict(self._last_seen)
        if not self._fresh or self.rest is None:
            return SyncSnapshot(
                contacts=contacts, conversations=conversations, cursor=_cursor(newest), complete=True
            )
        first_link = cursor is None and not self._linked_before
        history: list[RawPayload] = []
        complete = True
        for cid in list(self.channels):
            if first_link and not self.settings.backfill_messages:
                continue
            got, done = await self._page(cid, None if first_link else self._last_seen.get(cid, "0"))
            history += [self.wrap("MESSAGE_CREATE", m) for m in got]
            complete = complete and done
            if got:
                newest[cid] = max((str(m["id"]) for m in got), key=int)
        self._fresh = False
        await self._save(force=True)
        return SyncSnapshot(
            contacts=contacts,
            conversations=conversations,
            history=tuple(history),
            cursor=_cursor(newest),
            complete=complete,
        )

    async def _page(self, channel_id: str, after: str | None) -> tuple[list[dict[str, Any]], bool]:
        """Oldest first: what came after ``after`` (``catchup_pages`` pages at most), or the backfill."""
        assert self.rest is not None
        if after is None:
            wanted, before, out = self.settings.backfill_messages, None, list[dict[str, Any]]()
            while len(out) < wanted:
                limit = min(100, wanted - len(out))
                page = await self.rest.history(channel_id, before=before, limit=limit)
                out += page
                if len(page) < limit:
                    break
                before = page[-1]["id"]
            return list(reversed(out)), True
        out = list[dict[str, Any]]()
        for _ in range(self.settings.catchup_pages):
            page = await self.rest.history(channel_id, after=after, limit=100)
            out += sorted(page, key=lambda m: int(m["id"]))
            if len(page) < 100:
                return out, True
            after = out[-1]["id"]
        return out, False

    def _conversation(self, cid: str, ch: Mapping[str, Any]) -> Conversation:
        kind = (
            ConversationKind.DIRECT
            if ch["type"] == 1
            else (ConversationKind.GROUP if ch["type"] == 3 else ConversationKind.CHANNEL)
        )
        name = ch.get("name")
        parent = self.channels.get(str(ch.get("parent_id")))
        if parent is not None and name:
            name = f"{parent.get('name')} / {name}"
        members = tuple(self.members.get(str(ch.get("guild_id")), {})) if ch.get("guild_id") else ()
        return Conversation(
            network=NETWORK,
            account_id=self.ctx.account.id,
            remote_id=cid,
            name=name,
            type=kind,
            members=members,
        )
