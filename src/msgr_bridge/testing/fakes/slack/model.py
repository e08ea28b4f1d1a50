"""The fake Slack workspace: users, tokens, conversations, messages with ``ts``, threads, reactions, files.

Every change is also an event, shaped as Slack sends it (``message`` and its subtypes, ``reaction_added``,
``member_joined_channel``, ``channel_marked``, ...), handed to the registered listeners with the users who
may see it; the socket layer turns them into Socket Mode envelopes or RTM frames. Refusals raise
``SlackError`` with the error code Slack answers (``channel_not_found``, ``message_not_found``, ...).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterable
from typing import Any

from .entities import (
    CHANNEL_TYPE,
    ID_PREFIX,
    MARKED,
    TEAM_ID,
    Channel,
    ChannelKind,
    File,
    Listener,
    Msg,
    SlackError,
    Token,
    TokenKind,
    User,
)


class Workspace:
    """One Slack workspace. Not thread safe: used from the fake server's event loop only."""

    def __init__(self, base_url: str = "http://127.0.0.1/") -> None:
        self.base_url = base_url
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.channels: dict[str, Channel] = {}
        self.files: dict[str, File] = {}
        self.listeners: list[Listener] = []
        self._ids = itertools.count(1)
        self._last_ts = 0.0

    # --- identities ---------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def add_user(self, name: str, real_name: str | None = None, *, is_bot: bool = False) -> User:
        user = User(self._id("U"), name, real_name or name.title(), is_bot=is_bot)
        self.users[user.id] = user
        return user

    def issue_token(self, user_id: str, kind: TokenKind = "user") -> Token:
        """A new token of ``user_id``: ``xoxp-`` (user), ``xoxc-`` with a ``d`` cookie (session), ``xapp-``
        (app-level, for Socket Mode) or ``xoxb-`` (bot)."""
        prefix = {"user": "xoxp", "session": "xoxc", "app": "xapp", "bot": "xoxb"}[kind]
        value = f"{prefix}-{next(self._ids)}-{secrets.token_hex(12)}"
        cookie = f"xoxd-{secrets.token_urlsafe(24)}" if kind == "session" else None
        token = Token(value, user_id, kind, cookie=cookie)
        self.tokens[value] = token
        return token

    def user(self, user_id: str) -> User:
        found = self.users.get(user_id)
        if found is None:
            raise SlackError("user_not_found")
        return found

    def update_user(self, user_id: str, *, real_name: str | None = None, name: str | None = None) -> None:
        user = self.user(user_id)
        user.real_name = real_name or user.real_name
        user.name = name or user.name
        self.emit({"type": "user_change", "user": user.as_api()}, self.users)

    # --- conversations ------------------------------------------------------------------------------

    def create_channel(self, name: str, members: Iterable[str], kind: ChannelKind = "public") -> Channel:
        channel = Channel(self._id(ID_PREFIX[kind]), name, kind, list(dict.fromkeys(members)))
        self.channels[channel.id] = channel
        return channel

    def open_im(self, a: str, b: str) -> Channel:
        for channel in self.channels.values():
            if channel.kind == "im" and set(channel.members) == {a, b}:
                return channel
        return self.create_channel(b, [a, b], "im")

    def channel(self, channel_id: str, user_id: str | None = None) -> Channel:
        """The conversation, as ``user_id`` may see it (public channels are visible to all)."""
        found = self.channels.get(channel_id)
        if found is None or (user_id is not None and found.kind != "public" and user_id not in found.members):
            raise SlackError("channel_not_found")
        return found

    def member(self, channel_id: str, user_id: str) -> Channel:
        channel = self.channel(channel_id, user_id)
        if user_id not in channel.members:
            raise SlackError("not_in_channel")
        return channel

    def message(self, channel: Channel, ts: str) -> Msg:
        found = channel.messages.get(ts)
        if found is None:
            raise SlackError("message_not_found")
        return found

    def join(self, channel_id: str, user_id: str) -> None:
        channel = self.channel(channel_id, user_id)
        if user_id not in channel.members:
            channel.members.append(user_id)
            self._emit_in(
                channel,
                {
                    "type": "member_joined_channel",
                    "user": user_id,
                    "channel": channel.id,
                    "channel_type": CHANNEL_TYPE[channel.kind][0].upper(),
                    "event_ts": self.next_ts(),
                    "team": TEAM_ID,
                },
            )

    def leave(self, channel_id: str, user_id: str) -> None:
        channel = self.member(channel_id, user_id)
        event = {
            "type": "member_left_channel",
            "user": user_id,
            "channel": channel.id,
            "channel_type": CHANNEL_TYPE[channel.kind][0].upper(),
            "event_ts": self.next_ts(),
            "team": TEAM_ID,
        }
        self._emit_in(channel, event)
        channel.members.remove(user_id)

    # --- messages -----------------------------------------------------------------------------------

    def next_ts(self) -> str:
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def message_api(self, msg: Msg) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "message",
            "user": msg.user,
            "text": msg.text,
            "ts": msg.ts,
            "team": TEAM_ID,
        }
        if msg.subtype:
            out["subtype"] = msg.subtype
        if msg.thread_ts:
            out["thread_ts"] = msg.thread_ts
        if msg.reply_count:
            out["reply_count"] = msg.reply_count
            out["latest_reply"] = msg.latest_reply
        if msg.edited:
            out["edited"] = dict(msg.edited)
        if msg.reactions:
            out["reactions"] = [
                {"name": n, "users": list(u), "count": len(u)} for n, u in msg.reactions.items()
            ]
        if msg.files:
            out["files"] = [self.files[f].as_api(self.base_url) for f in msg.files]
        if msg.metadata:
            out["metadata"] = dict(msg.metadata)
        return out

    def post(
        self,
        channel_id: str,
        user_id: str,
        text: str,
        *,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        files: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
    ) -> Msg:
        channel = self.member(channel_id, user_id)
        parent = self.message(channel, thread_ts) if thread_ts else None
        if parent is not None and parent.is_reply:
            parent = self.message(channel, parent.thread_ts or "")
        file_ids = list(files)
        subtype = "file_share" if file_ids else ("thread_broadcast" if reply_broadcast and parent else None)
        msg = Msg(
            self.next_ts(),
            user_id,
            text,
            thread_ts=parent.ts if parent else None,
            subtype=subtype,
            reply_broadcast=reply_broadcast and parent is not None,
            files=file_ids,
            metadata=metadata,
        )
        channel.messages[msg.ts] = msg
        for file_id in file_ids:
            where = "public" if channel.kind == "public" else "private"
            self.files[file_id].shares.setdefault(where, {}).setdefault(channel.id, []).append({"ts": msg.ts})
        if parent is not None:
            parent.thread_ts = parent.ts
            parent.reply_count += 1
            parent.latest_reply = msg.ts
        self._emit_in(channel, {**self.message_api(msg), "channel": channel.id, "event_ts": msg.ts})
        return msg

    def update(self, channel_id: str, ts: str, user_id: str, text: str) -> Msg:
        channel = self.member(channel_id, user_id)
        msg = self.message(channel, ts)
        if msg.user != user_id:
            raise SlackError("cant_update_message")
        previous = self.message_api(msg)
        msg.text = text
        event_ts = self.next_ts()
        msg.edited = {"user": user_id, "ts": event_ts}
        self._emit_in(
            channel,
            {
                "type": "message",
                "subtype": "message_changed",
                "hidden": True,
                "channel": channel.id,
                "ts": event_ts,
                "event_ts": event_ts,
                "message": self.message_api(msg),
                "previous_message": previous,
            },
        )
        return msg

    def delete(self, channel_id: str, ts: str, user_id: str) -> None:
        channel = self.member(channel_id, user_id)
        msg = self.message(channel, ts)
        if msg.user != user_id:
            raise SlackError("cant_delete_message")
        previous = self.message_api(msg)
        del channel.messages[ts]
        event_ts = self.next_ts()
        self._emit_in(
            channel,
            {
                "type": "message",
                "subtype": "message_deleted",
                "hidden": True,
                "channel": channel.id,
                "ts": event_ts,
                "event_ts": event_ts,
                "deleted_ts": ts,
                "previous_message": previous,
            },
        )

    def react(self, channel_id: str, ts: str, user_id: str, name: str, *, add: bool) -> None:
        channel = self.member(channel_id, user_id)
        msg = self.message(channel, ts)
        users = msg.reactions.setdefault(name, [])
        if add and user_id in users:
            raise SlackError("already_reacted")
        if not add and user_id not in users:
            raise SlackError("no_reaction")
        if add:
            users.append(user_id)
        else:
            users.remove(user_id)
            if not users:
                del msg.reactions[name]
        self._emit_in(
            channel,
            {
                "type": "reaction_added" if add else "reaction_removed",
                "user": user_id,
                "reaction": name,
                "item_user": msg.user,
                "event_ts": self.next_ts(),
                "item": {"type": "message", "channel": channel.id, "ts": ts},
            },
        )

    def mark(self, channel_id: str, user_id: str, ts: str) -> None:
        channel = self.member(channel_id, user_id)
        channel.last_read[user_id] = ts
        unread = sum(1 for m in channel.messages.values() if m.ts > ts and not m.is_reply)
        self.emit(
            {
                "type": MARKED[channel.kind],
                "channel": channel.id,
                "ts": ts,
                "unread_count": unread,
                "event_ts": self.next_ts(),
            },
            [user_id],
        )

    def typing(self, channel_id: str, user_id: str) -> None:
        channel = self.member(channel_id, user_id)
        others = [m for m in channel.members if m != user_id]
        self.emit({"type": "user_typing", "channel": channel.id, "user": user_id}, others)

    # --- history ------------------------------------------------------------------------------------

    def history(self, channel: Channel, *, oldest: str, latest: str | None, inclusive: bool) -> list[Msg]:
        """Top-level messages (and thread broadcasts) in the range, newest first, as Slack returns them."""

        def inside(m: Msg) -> bool:
            low = m.ts >= oldest if inclusive else m.ts > oldest
            high = latest is None or (m.ts <= latest if inclusive else m.ts < latest)
            return low and high

        shown = [m for m in channel.messages.values() if (not m.is_reply or m.reply_broadcast) and inside(m)]
        return sorted(shown, key=lambda m: float(m.ts), reverse=True)

    def replies(self, channel: Channel, thread_ts: str) -> list[Msg]:
        parent = self.message(channel, thread_ts)
        root = parent.thread_ts or parent.ts
        thread = [m for m in channel.messages.values() if m.ts == root or m.thread_ts == root]
        return sorted(thread, key=lambda m: float(m.ts))

    # --- events -------------------------------------------------------------------------------------

    def _emit_in(self, channel: Channel, event: dict[str, Any]) -> None:
        self.emit(
            {**event, "channel_type": CHANNEL_TYPE[channel.kind]} if event["type"] == "message" else event,
            channel.members,
        )

    def emit(self, event: dict[str, Any], to: Iterable[str]) -> None:
        audience = frozenset(to)
        for listener in list(self.listeners):
            listener(event, audience)
