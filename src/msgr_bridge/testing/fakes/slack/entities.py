"""What the fake Slack workspace is made of (users, tokens, files, messages, conversations), each able to
show itself as Slack's API does, and ``SlackError``, a refusal worded as Slack words it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

TEAM_ID = "T0FAKE0001"
TEAM_DOMAIN = "fake-workspace"

TokenKind = Literal["user", "session", "app", "bot"]
ChannelKind = Literal["public", "private", "im", "mpim"]
Listener = Callable[[dict[str, Any], frozenset[str]], None]
"""Called with an event and the ids of the users who receive it."""

CHANNEL_TYPE = {"public": "channel", "private": "group", "im": "im", "mpim": "mpim"}
MARKED = {"public": "channel_marked", "private": "group_marked", "im": "im_marked", "mpim": "mpim_marked"}
ID_PREFIX = {"public": "C", "private": "G", "im": "D", "mpim": "G"}


class SlackError(Exception):
    """A refusal, worded as Slack words it (the ``error`` field of ``{"ok": false}``)."""

    def __init__(self, error: str, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}


@dataclass
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False
    deleted: bool = False

    def as_api(self) -> dict[str, Any]:
        profile = {
            "real_name": self.real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
        }
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "real_name": self.real_name,
            "deleted": self.deleted,
            "is_bot": self.is_bot,
            "profile": profile,
        }


@dataclass
class Token:
    value: str
    user_id: str
    kind: TokenKind
    cookie: str | None = None
    """The ``d`` cookie a session (``xoxc-``) token must come with."""
    revoked: str | None = None
    """The error every call with this token answers (``token_revoked``, ``account_inactive``, ...)."""


@dataclass
class File:
    id: str
    user: str
    name: str
    length: int
    title: str = ""
    mimetype: str = "application/octet-stream"
    content: bytes | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    shares: dict[str, dict[str, list[dict[str, str]]]] = field(default_factory=dict)
    """Where it was shared, as Slack shows it: ``{"public"|"private": {channel: [{"ts": ...}]}}``."""

    def as_api(self, base_url: str) -> dict[str, Any]:
        url = f"{base_url}files-pri/{TEAM_ID}-{self.id}/{self.name}"
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": self.mimetype,
            "filetype": "binary",
            "user": self.user,
            "size": self.length,
            "url_private": url,
            "url_private_download": url + "?download=1",
            "shares": self.shares,
            "mode": "hosted",
        }


@dataclass
class Msg:
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    subtype: str | None = None
    reply_broadcast: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    edited: dict[str, str] | None = None
    reply_count: int = 0
    latest_reply: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class Channel:
    id: str
    name: str
    kind: ChannelKind
    members: list[str]
    messages: dict[str, Msg] = field(default_factory=dict)
    topic: str = ""
    last_read: dict[str, str] = field(default_factory=dict)
    archived: bool = False

    def as_api(self, user_id: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "is_channel": self.kind == "public",
            "is_group": self.kind == "private",
            "is_im": self.kind == "im",
            "is_mpim": self.kind == "mpim",
            "is_private": self.kind != "public",
            "is_archived": self.archived,
            "created": 0,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "num_members": len(self.members),
        }
        if self.kind == "im":
            out["user"] = next((m for m in self.members if m != user_id), self.members[0])
        if user_id is not None:
            out["is_member"] = user_id in self.members
            out["last_read"] = self.last_read.get(user_id, "0000000000.000000")
        return out


RECORD_MAX = 10_000
"""The records (requests, pushes, acks, ...) keep at most this many entries each: the oldest half goes."""


def bounded[T](items: list[T], item: T, limit: int = RECORD_MAX) -> None:
    """Append, dropping the older half once ``limit`` is reached (a fake left running stays bounded)."""
    if len(items) >= limit:
        del items[: limit // 2]
    items.append(item)


def bounded_put[K, V](items: dict[K, V], key: K, value: V, limit: int = 1000) -> None:
    while len(items) >= limit:
        del items[next(iter(items))]
    items[key] = value
