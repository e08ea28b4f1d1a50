"""What the fake Telegram knows: users, private chats, basic groups, channels (supergroups, forums) and their
messages, with the per-user update log (``pts``) and per-channel logs that ``getDifference`` and
``getChannelDifference`` answer from.

As on Telegram, message ids in private chats and basic groups are per user (the same message has one id
for its sender and another for each recipient), while a channel's messages have one id for everyone; each
user's common box and each channel count ``pts``. A ``Post`` is one message as the world sees it, and
``Post.view(user)`` is the ``types.Message`` that user gets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telethon.tl import types

LOG_LIMIT = 5000
"""Update-log entries kept per box; an older ``pts`` gets ``differenceTooLong`` like on Telegram."""


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def random_hash() -> int:
    return int.from_bytes(os.urandom(8), "little", signed=True)


@dataclass
class Box:
    """One ``pts`` sequence and its log of ``(pts after, pts_count, update)``."""

    pts: int = 1
    """Telegram's boxes start at 1 (clients read 0 as "no state")."""
    log: list[tuple[int, int, Any]] = field(default_factory=list)
    next_id: int = 1

    def append(self, update: Any, count: int) -> int:
        self.pts += count
        self.log.append((self.pts, count, update))
        del self.log[:-LOG_LIMIT]
        return self.pts

    def since(self, pts: int) -> list[Any] | None:
        """Updates after ``pts``; None when the log no longer reaches back that far."""
        if self.log and pts < self.log[0][0] - self.log[0][1]:
            return None
        return [update for after, _count, update in self.log if after > pts]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


@dataclass
class User:
    id: int
    first_name: str
    phone: str
    username: str | None = None
    password: str | None = None
    """The 2FA password (None: no 2FA)."""
    login_code: str = "12345"
    access_hash: int = field(default_factory=random_hash)
    box: Box = field(default_factory=Box)
    posts: dict[int, Post] = field(default_factory=dict)
    """This user's view of private and basic-group messages, by their message id."""
    contacts: set[int] = field(default_factory=set)
    random_ids: dict[int, Post] = field(default_factory=dict)
    """``random_id`` of this user's recent sends: Telegram refuses a second send with the same one."""

    def tl(self, viewer: int) -> types.User:
        return types.User(
            id=self.id,
            is_self=self.id == viewer,
            contact=self.id in self.contacts,
            access_hash=self.access_hash,
            first_name=self.first_name,
            username=self.username,
            phone=self.phone,
            status=types.UserStatusRecently(),
        )


@dataclass
class Group:
    """A basic group (``types.Chat``)."""

    id: int
    title: str
    members: set[int] = field(default_factory=set)
    date: datetime = field(default_factory=now)

    def tl(self, viewer: int) -> types.Chat:
        return types.Chat(
            id=self.id,
            title=self.title,
            photo=types.ChatPhotoEmpty(),
            participants_count=len(self.members),
            date=self.date,
            version=1,
            left=viewer not in self.members,
        )


@dataclass
class Channel:
    """A supergroup (``megagroup``), forum (``forum``) or broadcast channel."""

    id: int
    title: str
    megagroup: bool = True
    forum: bool = False
    owner: int | None = None
    members: set[int] = field(default_factory=set)
    access_hash: int = field(default_factory=random_hash)
    box: Box = field(default_factory=Box)
    posts: dict[int, Post] = field(default_factory=dict)
    date: datetime = field(default_factory=now)

    def tl(self, viewer: int) -> types.Channel:
        return types.Channel(
            id=self.id,
            title=self.title,
            photo=types.ChatPhotoEmpty(),
            date=self.date,
            creator=viewer == self.owner,
            left=viewer not in self.members,
            broadcast=not self.megagroup,
            megagroup=self.megagroup,
            forum=self.forum,
            access_hash=self.access_hash,
            participants_count=len(self.members),
        )


Place = tuple[str, int, int]
"""Where a post lives: ``("user", a, b)`` (a private chat, a < b), ``("chat", id, 0)`` or
``("channel", id, 0)``."""


@dataclass
class Post:
    """One message as the world sees it, with its id in each member's view."""

    place: Place
    sender: int
    text: str
    entities: list[Any]
    ids: dict[int, int]
    """viewer user id -> message id (one shared id under key 0 in a channel)."""
    date: datetime = field(default_factory=now)
    reply_to: Post | None = None
    topic: int | None = None
    action: Any = None
    edit_date: datetime | None = None
    reactions: dict[int, str] = field(default_factory=dict)
    media: Any = None
    """A ``files.StoredFile`` (a photo or document), or None."""
    grouped_id: int | None = None
    """The album this message belongs to (``World.send_album``)."""

    def id_for(self, viewer: int) -> int:
        return self.ids[0] if self.place[0] == "channel" else self.ids[viewer]

    def peer_for(self, viewer: int) -> Any:
        kind, a, b = self.place
        if kind == "user":
            return types.PeerUser(b if viewer == a else a)
        return types.PeerChat(a) if kind == "chat" else types.PeerChannel(a)

    def view(self, viewer: int) -> Any:
        reply = None
        if self.reply_to is not None or self.topic is not None:
            target = self.reply_to.id_for(viewer) if self.reply_to is not None else self.topic
            reply = types.MessageReplyHeader(
                forum_topic=self.topic is not None or None,
                reply_to_msg_id=target,
                reply_to_top_id=self.topic if self.topic is not None and target != self.topic else None,
            )
        common: dict[str, Any] = {
            "id": self.id_for(viewer),
            "peer_id": self.peer_for(viewer),
            "date": self.date,
            "out": self.sender == viewer,
            "from_id": types.PeerUser(self.sender),
            "reply_to": reply,
        }
        if self.action is not None:
            return types.MessageService(action=self.action, **common)
        return types.Message(
            message=self.text,
            entities=self.entities or None,
            media=self.media.tl_media() if self.media is not None else None,
            edit_date=self.edit_date,
            grouped_id=self.grouped_id,
            reactions=self.reactions_tl(viewer),
            **common,
        )

    def reactions_tl(self, viewer: int) -> types.MessageReactions | None:
        if not self.reactions:
            return None
        counts: dict[str, int] = {}
        for emoji in self.reactions.values():
            counts[emoji] = counts.get(emoji, 0) + 1
        return types.MessageReactions(
            results=[types.ReactionCount(types.ReactionEmoji(e), n) for e, n in counts.items()],
            recent_reactions=[
                types.MessagePeerReaction(
                    peer_id=types.PeerUser(uid),
                    date=self.date,
                    reaction=types.ReactionEmoji(e),
                    my=uid == viewer,
                )
                for uid, e in self.reactions.items()
            ],
        )
