"""Catch-up: the channels the bot sees and, after a fresh IDENTIFY, the history it missed.

``sync_state`` pages each channel's history after the last message the core acknowledged there (``after=``,
at most ``catchup_pages`` pages of 100, oldest first); on the first link it imports the latest
``backfill_messages`` per channel instead (``before=`` paging). History goes through the same pipeline as
live messages, so the core's dedupe drops what it already had. Each page is reported on ``ctx.progress``
(phase ``history`` for the backfill, ``catchup`` otherwise), each channel as finished once paged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from msgr_bridge import SyncSnapshot, TransientError
from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import Contact, Conversation, ConversationKind

from .convert import NETWORK
from .directory import Directory
from .media import STORED_MAP, STORED_MAX, InboundFiles, download

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


class Catchup(Directory):
    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._fresh = False
        """True after a fresh IDENTIFY (no RESUME): ``sync_state`` must page history."""
        self._linked_before = False
        stored = ctx.state.map(STORED_MAP, max_entries=STORED_MAX)
        self.files = InboundFiles(self._download, ctx.media, stored, None, self.log)
        """Inbound attachments streamed into the core's storage before a payload is pushed (``media.py``)."""

    def _download(self, url: str) -> AsyncIterator[bytes]:
        if self.rest is None:
            raise TransientError("Discord is not connected")
        return download(self.rest.http, url, self.settings.api_base)

    async def wrap_stored(self, event: str, d: Mapping[str, Any]) -> dict[str, Any]:
        """``wrap`` plus, for a new message, where its attachments were stored (``media``)."""
        payload = self.wrap(event, d)
        if event == "MESSAGE_CREATE" and (media := await self.files.store(d)):
            payload["media"] = media
        return payload

    async def _save(self, *, force: bool = False, ended: bool = False) -> None:
        raise NotImplementedError  # the connector's: it knows the gateway session

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
        # Partial when a member list is not known for sure: the core then keeps the members it knew.
        complete = all(c.members for c in conversations)
        if not self._fresh or self.rest is None:
            return SyncSnapshot(
                contacts=contacts, conversations=conversations, cursor=_cursor(newest), complete=complete
            )
        first_link = cursor is None and not self._linked_before
        history: list[RawPayload] = []
        for cid in list(self.channels):
            if first_link and not self.settings.backfill_messages:
                continue
            got, done = await self._page(cid, None if first_link else self._last_seen.get(cid, "0"))
            phase = "history" if first_link else "catchup"
            self.ctx.progress.report(cid, done=len(got), phase=phase, finished=True)
            history += [await self.wrap_stored("MESSAGE_CREATE", m) for m in got]
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
                self.ctx.progress.report(channel_id, done=len(out), phase="history")
                if len(page) < limit:
                    break
                before = page[-1]["id"]
            return list(reversed(out)), True
        out = list[dict[str, Any]]()
        for _ in range(self.settings.catchup_pages):
            page = await self.rest.history(channel_id, after=after, limit=100)
            out += sorted(page, key=lambda m: int(m["id"]))
            self.ctx.progress.report(channel_id, done=len(out), phase="catchup")
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
        gid = str(ch.get("guild_id"))
        members = tuple(self.members[gid]) if ch.get("guild_id") and self.members_certain(gid) else ()
        return Conversation(
            network=NETWORK,
            account_id=self.ctx.account.id,
            remote_id=cid,
            name=name,
            type=kind,
            members=members,
        )
