"""History catch-up: ``conversations.history`` since the last message seen per conversation, paced to
Slack's limit and resumable after a kill.

Slack answers history newest first, so a conversation's missed messages are collected page by page and
handed over oldest first once its last page is in. Progress is kept in two places:

* the sync cursor (stored by the core only after the history it came with is committed) holds the last
  ``ts`` per conversation: what is safely stored;
* ``ctx.state["catchup"]`` holds the conversation being paged (its range, Slack's cursor and the pages
  collected so far), written after every page: a sync killed or cut short by the rate limit resumes there.

Calls are paced to ``history_per_minute`` (Slack allows apps outside its Marketplace one a minute, 15
messages each); a sync waits at most ``history_max_wait_s`` for the limit, then stops with
``complete=False`` and the next sync goes on. Each page is logged as ``slack.catchup_progress``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from msgr_bridge.connectors.protocol import ConnectorStateStore
from msgr_bridge.errors import RateLimited

from .client import SlackWeb
from .config import SlackSettings

STATE_KEY = "catchup"
MAX_PENDING_MESSAGES = 2000
"""A conversation's catch-up keeps at most this many messages (the newest) in one go."""


class Pacer:
    """At most ``per_minute`` calls a minute: ``wait()`` says how long the next call must wait."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self.next_at = 0.0

    def wait(self) -> float:
        return max(0.0, self.next_at - time.monotonic())

    def used(self) -> None:
        self.next_at = time.monotonic() + self.interval


class Catchup:
    def __init__(
        self,
        web: SlackWeb,
        state: ConnectorStateStore,
        settings: SlackSettings,
        pacer: Pacer,
        sleep: Callable[[float], Any],
        log: Any,
    ) -> None:
        self.web, self.state, self.settings, self.pacer, self.sleep, self.log = (
            web,
            state,
            settings,
            pacer,
            sleep,
            log,
        )

    async def run(self, latest: dict[str, str], channels: list[str]) -> tuple[list[dict[str, Any]], bool]:
        """Missed messages (each with its ``channel``), oldest first per conversation, and whether every
        conversation is caught up. ``latest`` is updated in place."""
        pending: Mapping[str, Any] = await self.state.get(STATE_KEY) or {}
        order = sorted(channels, key=lambda c: c != pending.get("channel"))
        deadline = time.monotonic() + self.settings.history_max_wait_s
        out: list[dict[str, Any]] = []
        for channel in order:
            resume = pending if pending.get("channel") == channel else None
            done = await self._conversation(channel, latest, resume, deadline, out)
            if not done:
                return out, False
        return out, True

    async def _conversation(
        self,
        channel: str,
        latest: dict[str, str],
        resume: Mapping[str, Any] | None,
        deadline: float,
        out: list[dict[str, Any]],
    ) -> bool:
        floor = f"{time.time() - self.settings.history_days * 86400:.6f}"
        oldest = str(resume["oldest"]) if resume else latest.get(channel, floor)
        cursor = str(resume.get("cursor") or "") if resume else ""
        collected: list[dict[str, Any]] = list(resume.get("messages") or ()) if resume else []
        while True:
            wait = self.pacer.wait()
            if wait > 0 and time.monotonic() + wait > deadline:
                await self._save(channel, oldest, cursor, collected)
                return False
            if wait:
                await self.sleep(wait)
            self.pacer.used()
            try:
                data = await self.web.call(
                    "conversations.history",
                    channel=channel,
                    oldest=oldest,
                    limit=self.settings.history_page_size,
                    cursor=cursor or None,
                )
            except RateLimited as exc:
                self.pacer.next_at = time.monotonic() + exc.retry_after
                await self._save(channel, oldest, cursor, collected)
                return False
            collected += [dict(m) for m in data.get("messages") or () if isinstance(m, dict)]
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            self.log.info(
                "slack.catchup_progress", channel=channel, fetched=len(collected), more=bool(cursor)
            )
            if not cursor or len(collected) >= MAX_PENDING_MESSAGES:
                break
            await self._save(channel, oldest, cursor, collected)
        if cursor:
            self.log.warning("slack.catchup_truncated", channel=channel, kept=len(collected))
        ordered = sorted(collected, key=lambda m: float(m.get("ts") or 0))
        out += [{**m, "channel": channel} for m in ordered if isinstance(m.get("ts"), str)]
        latest[channel] = max([oldest, *(m["ts"] for m in out if m["channel"] == channel)], key=float)
        await self.state.set(STATE_KEY, {})
        return True

    async def _save(self, channel: str, oldest: str, cursor: str, messages: list[dict[str, Any]]) -> None:
        await self.state.set(
            STATE_KEY, {"channel": channel, "oldest": oldest, "cursor": cursor, "messages": messages}
        )


def latest_of(cursor: str | None) -> dict[str, str]:
    """The last stored ``ts`` per conversation, from the sync cursor."""
    try:
        data = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    latest = data.get("latest") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in latest.items()} if isinstance(latest, dict) else {}


def cursor_of(latest: Mapping[str, str]) -> str:
    return json.dumps({"v": 1, "latest": dict(latest)}, sort_keys=True)
