"""History catch-up: ``conversations.history`` since the last message seen per conversation, paced to
Slack's limit and resumable after a kill.

Slack answers history newest first, so a conversation's missed messages are collected page by page and
handed over oldest first once its last page is in, together with the new replies of the threads among
them (``conversations.replies``, paced the same way; a thread whose parent is older than the catch-up's
start is not seen). Progress is kept in two places:

* the sync cursor (stored by the core only after the history it came with is committed) holds the last
  ``ts`` per conversation: what is safely stored;
* ``ctx.state["catchup"]`` holds the conversation being paged (its range, Slack's cursor and the pages
  collected so far), written after every page: a sync killed or cut short by the rate limit resumes there.

Calls are paced to ``history_per_minute`` (Slack allows apps outside its Marketplace one a minute, 15
messages each); a sync waits at most ``history_max_wait_s`` for the limit, then returns with
``complete=False`` and ``Backlog`` goes on in the background while the socket is read. Each page is logged
as ``slack.catchup_progress`` and reported on ``ctx.progress`` (phase ``history`` for a conversation never
seen, ``catchup`` otherwise; ``finished`` once its messages are handed over).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from msgr_bridge.connectors.protocol import ConnectorStateStore
from msgr_bridge.errors import BridgeError, RateLimited
from msgr_bridge.sdk.progress import ProgressReporter, RecordingProgress

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
        progress: ProgressReporter | None = None,
    ) -> None:
        self.completed = set()
        self.progress = progress or RecordingProgress()
        self.web, self.state, self.settings, self.pacer, self.sleep, self.log = (
            web,
            state,
            settings,
            pacer,
            sleep,
            log,
        )

    completed: set[str]

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
        phase = "catchup" if channel in latest else "history"
        p: dict[str, Any] = dict(resume) if resume else {}
        if not p:
            p = {
                "channel": channel,
                "oldest": latest.get(channel, floor),
                "cursor": "",
                "messages": [],
                "threads": None,
            }
        page = self.settings.history_page_size
        while p.get("threads") is None:  # the conversation's pages, newest first
            args = {"channel": channel, "oldest": p["oldest"], "limit": page, "cursor": p["cursor"] or None}
            data = await self._call(p, "conversations.history", deadline, args)
            if data is None:
                return False
            p["messages"] += [dict(m) for m in data.get("messages") or () if isinstance(m, dict)]
            p["cursor"] = _next(data)
            self.log.info(
                "slack.catchup_progress", channel=channel, fetched=len(p["messages"]), more=bool(p["cursor"])
            )
            self.progress.report(channel, done=len(p["messages"]), phase=phase)
            if not p["cursor"] or len(p["messages"]) >= MAX_PENDING_MESSAGES:
                if p["cursor"]:
                    self.log.warning("slack.catchup_truncated", channel=channel, kept=len(p["messages"]))
                p["threads"], p["cursor"] = _threads_with_news(p["messages"], p["oldest"]), ""
            await self._save(p)
        while p["threads"]:  # then the replies of threads that got new ones
            parent = p["threads"][0]
            args = {
                "channel": channel,
                "ts": parent,
                "oldest": p["oldest"],
                "limit": page,
                "cursor": p["cursor"] or None,
            }
            data = await self._call(p, "conversations.replies", deadline, args)
            if data is None:
                return False
            p["messages"] += [
                dict(m) for m in data.get("messages") or () if isinstance(m, dict) and m.get("ts") != parent
            ]
            p["cursor"] = _next(data)
            if not p["cursor"]:
                p["threads"].pop(0)
            await self._save(p)
        unique = {m["ts"]: m for m in p["messages"] if isinstance(m.get("ts"), str)}
        ordered = sorted(unique.values(), key=lambda m: float(m["ts"]))
        out += [{**m, "channel": channel} for m in ordered]
        latest[channel] = max([p["oldest"], *unique], key=float)
        self.completed.add(channel)
        self.progress.report(channel, done=len(ordered), phase=phase, finished=True)
        await self.state.set(STATE_KEY, {})
        return True

    async def _call(
        self, p: dict[str, Any], method: str, deadline: float, args: dict[str, Any]
    ) -> dict[str, Any] | None:
        """One paced history call; None (progress saved) when the limit would keep us past ``deadline``
        or Slack answered 429."""
        wait = self.pacer.wait()
        if wait > 0 and time.monotonic() + wait > deadline:
            await self._save(p)
            return None
        if wait:
            await self.sleep(wait)
        self.pacer.used()
        try:
            return await self.web.call(method, **args)
        except RateLimited as exc:
            self.pacer.next_at = time.monotonic() + exc.retry_after
            await self._save(p)
            return None

    async def _save(self, p: dict[str, Any]) -> None:
        await self.state.set(STATE_KEY, p)


def _next(data: Mapping[str, Any]) -> str:
    return str((data.get("response_metadata") or {}).get("next_cursor") or "")


def _threads_with_news(messages: list[dict[str, Any]], oldest: str) -> list[str]:
    """Parents (in what was fetched) whose latest reply is newer than the catch-up's start."""
    found = []
    for m in messages:
        try:
            if m.get("reply_count") and float(m.get("latest_reply") or 0) > float(oldest):
                found.append(str(m["ts"]))
        except (TypeError, ValueError, KeyError):
            continue
    return found


class Backlog:
    """One connection's catch-up: what fits in a sync's wait budget is handed over with the sync; the rest
    is fetched in the background while the socket is read (``start``), at the limit's pace for as long as
    it takes, each conversation pushed through the sink once complete."""

    def __init__(
        self,
        web: SlackWeb,
        state: ConnectorStateStore,
        settings: SlackSettings,
        pacer: Pacer,
        sleep: Callable[[float], Any],
        log: Any,
        progress: ProgressReporter | None = None,
    ) -> None:
        self.now = Catchup(web, state, settings, pacer, sleep, log, progress)
        patient = settings.model_copy(update={"history_max_wait_s": 3600.0})
        self.later = Catchup(web, state, patient, pacer, sleep, log, progress)
        self.pacer, self.sleep, self.log = pacer, sleep, log
        self.caught_up = False
        self.channels: list[str] = []
        self.latest: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None

    async def in_sync(self, latest: dict[str, str], channels: list[str]) -> tuple[list[dict[str, Any]], bool]:
        """The missed messages that fit in this sync, and whether that is all of them."""
        if self.caught_up or self.task is not None:
            return [], self.caught_up
        self.channels, self.latest = channels, latest
        messages, self.caught_up = await self.now.run(latest, channels)
        return messages, self.caught_up

    def start(self, push: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if not self.caught_up and self.channels and self.task is None:
            self.task = asyncio.create_task(self._drain(push))

    async def _drain(self, push: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        try:
            for channel in [c for c in self.channels if c not in self.now.completed]:
                while True:
                    messages, done = await self.later.run(self.latest, [channel])
                    for message in messages:
                        await push(message)
                    if done:
                        break
                    await self.sleep(max(self.pacer.wait(), 1.0))  # Slack said 429: its Retry-After
            self.caught_up = True
            self.log.info("slack.catchup_done", conversations=len(self.channels))
        except BridgeError as exc:  # the next connection's sync starts again where the state says
            self.log.warning("slack.catchup_failed", error=exc.message)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


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
