"""What people do in the fake Telegram, and the updates each member gets for it.

``World`` is used the same way by the TL methods (the client under test acting) and by tests (the other
people acting): every action writes the update into each member's log (``pts``) and pushes it to their live
connections, except the connection that made the request (it gets the answer instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from telethon.tl import types

from .world import Box, Channel, Group, Place, Post, User, now, random_hash

Push = Callable[[int, Any, Any], None]
"""``push(user_id, update, origin_connection)``: hand one update to a user's live connections."""

Where = User | Group | Channel


class World:
    def __init__(self, push: Push) -> None:
        self.users: dict[int, User] = {}
        self.groups: dict[int, Group] = {}
        self.channels: dict[int, Channel] = {}
        self.push = push
        self._next_id = 1000

    # --- people and places --------------------------------------------------------------------------

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_user(
        self, first_name: str, phone: str, *, password: str | None = None, username: str | None = None
    ) -> User:
        user = User(id=self._id(), first_name=first_name, phone=phone, password=password, username=username)
        self.users[user.id] = user
        return user

    def user_by_phone(self, phone: str) -> User | None:
        digits = "".join(ch for ch in phone if ch.isdigit())
        return next((u for u in self.users.values() if u.phone == digits), None)

    def create_group(self, title: str, members: Iterable[User]) -> Group:
        group = Group(id=self._id(), title=title, members={u.id for u in members})
        self.groups[group.id] = group
        return group

    def create_channel(
        self, title: str, members: Iterable[User], *, owner: User, megagroup: bool = True, forum: bool = False
    ) -> Channel:
        channel = Channel(id=self._id(), title=title, megagroup=megagroup, forum=forum, owner=owner.id)
        channel.members = {owner.id, *(u.id for u in members)}
        self.channels[channel.id] = channel
        return channel

    def members(self, place: Place) -> set[int]:
        kind, a, b = place
        if kind == "user":
            return {a, b}
        return set(self.groups[a].members if kind == "chat" else self.channels[a].members)

    def place_of(self, sender: int, where: Where) -> Place:
        if isinstance(where, User):
            return ("user", min(sender, where.id), max(sender, where.id))
        return ("chat", where.id, 0) if isinstance(where, Group) else ("channel", where.id, 0)

    def entities_for(self, viewer: int, place: Place) -> tuple[list[Any], list[Any]]:
        """The users and chats an update about ``place`` carries (so the client knows every peer)."""
        users = [self.users[uid].tl(viewer) for uid in sorted(self.members(place)) if uid in self.users]
        kind, a, _ = place
        chats = (
            [] if kind == "user" else [(self.groups[a] if kind == "chat" else self.channels[a]).tl(viewer)]
        )
        return users, chats

    # --- messages -----------------------------------------------------------------------------------

    def send(
        self,
        sender: User,
        where: Where,
        text: str,
        *,
        entities: list[Any] | None = None,
        reply_to: int | None = None,
        topic: int | None = None,
        action: Any = None,
        media: Any = None,
        origin: Any = None,
        grouped_id: int | None = None,
    ) -> Post:
        """``sender`` posts ``text``; ``reply_to`` is a message id in the sender's view; ``media`` a file of
        ``FakeTelegram.files`` (``files.add(...)``)."""
        place = self.place_of(sender.id, where)
        target = self.find(sender.id, where, reply_to) if reply_to else None
        post = Post(
            place,
            sender.id,
            text,
            list(entities or []),
            {},
            reply_to=target,
            topic=topic,
            action=action,
            media=media,
            grouped_id=grouped_id,
        )
        if isinstance(where, Channel):
            post.ids[0] = where.box.new_id()
            where.posts[post.ids[0]] = post
            pts = where.box.pts + 1
            self._channel_event(
                where, origin, lambda uid: types.UpdateNewChannelMessage(post.view(uid), pts, 1), 1
            )
            return post
        for uid in sorted(self.members(place)):
            user = self.users[uid]
            post.ids[uid] = user.box.new_id()
            user.posts[post.ids[uid]] = post
        for uid in sorted(self.members(place)):
            self._user_update(
                uid, lambda uid, pts: types.UpdateNewMessage(post.view(uid), pts, 1), 1, place, origin
            )
        return post

    def send_album(
        self, sender: User, where: Where, files: list[Any], caption: str = "", *, split: bool = False
    ) -> list[Post]:
        """``sender`` posts ``files`` as one album (``messages.sendMultiMedia``): one message per file
        sharing a ``grouped_id``, the caption on the first. Each member gets the new messages in one
        container, or one container per message with ``split`` (as an album from another data centre
        arrives)."""
        grouped = abs(random_hash()) or 1
        with self.together(enabled=not split):
            return [
                self.send(sender, where, caption if i == 0 else "", media=f, grouped_id=grouped)
                for i, f in enumerate(files)
            ]

    @contextmanager
    def together(self, *, enabled: bool = True) -> Iterator[None]:
        """The updates made inside reach each member in one ``Updates`` container."""
        if not enabled:
            yield
            return
        held: dict[int, list[tuple[Any, Any]]] = {}
        push = self.push
        self.push = lambda uid, updates, origin: held.setdefault(uid, []).append((updates, origin))
        try:
            yield
        finally:
            self.push = push
            for uid, items in held.items():
                first, origin = items[0]
                merged = [u for updates, _ in items for u in updates.updates]
                push(uid, types.Updates(merged, first.users, first.chats, first.date, 0), origin)

    def find(self, viewer: int, where: Where | Place, msg_id: int) -> Post | None:
        if isinstance(where, Channel) or (isinstance(where, tuple) and where[0] == "channel"):
            channel = where if isinstance(where, Channel) else self.channels[where[1]]
            return channel.posts.get(msg_id)
        return self.users[viewer].posts.get(msg_id)

    def edit(self, post: Post, text: str, *, entities: list[Any] | None = None, origin: Any = None) -> None:
        post.text, post.entities, post.edit_date = text, list(entities or []), now()
        kind, cid, _ = post.place
        if kind == "channel":
            channel = self.channels[cid]
            pts = channel.box.pts + 1
            self._channel_event(
                channel, origin, lambda uid: types.UpdateEditChannelMessage(post.view(uid), pts, 1), 1
            )
            return
        for uid in sorted(self.members(post.place)):
            self._user_update(
                uid,
                lambda uid, pts: types.UpdateEditMessage(post.view(uid), pts, 1),
                1,
                post.place,
                origin,
            )

    def delete(
        self, by: int, posts: list[Post], *, revoke: bool = True, origin: Any = None
    ) -> tuple[int, int]:
        """Delete for ``by`` (and for everyone with ``revoke``); returns ``by``'s (pts, pts_count)."""
        if not posts:
            box = self.users[by].box
            return box.pts, 0
        kind, cid, _ = posts[0].place
        if kind == "channel":
            channel = self.channels[cid]
            ids = [p.ids[0] for p in posts]
            for msg_id in ids:
                channel.posts.pop(msg_id, None)
            pts = channel.box.pts + len(ids)
            self._channel_event(
                channel,
                origin,
                lambda uid: types.UpdateDeleteChannelMessages(cid, ids, pts, len(ids)),
                len(ids),
            )
            return channel.box.pts, len(ids)
        result = (0, 0)
        removed: dict[int, list[int]] = {}
        for uid in sorted(self.members(posts[0].place)) if revoke else [by]:
            user = self.users[uid]
            ids = [p.ids[uid] for p in posts if uid in p.ids and user.posts.pop(p.ids[uid], None) is not None]
            removed[uid] = ids
            if not ids:
                continue
            pts = self._user_update(
                uid,
                lambda uid, pts: types.UpdateDeleteMessages(removed[uid], pts, len(removed[uid])),
                len(ids),
                posts[0].place,
                origin,
            )
            if uid == by:
                result = (pts, len(ids))
        return result

    def react(self, by: User, post: Post, emoji: str | None, *, origin: Any = None) -> types.Updates:
        if emoji:
            post.reactions[by.id] = emoji
        else:
            post.reactions.pop(by.id, None)
        for uid in sorted(self.members(post.place)):
            if uid != by.id:
                self._plain(
                    uid,
                    types.UpdateMessageReactions(
                        post.peer_for(uid),
                        post.id_for(uid),
                        post.reactions_tl(uid) or types.MessageReactions(results=[]),
                    ),
                    None,
                )
        update = types.UpdateMessageReactions(
            post.peer_for(by.id),
            post.id_for(by.id),
            post.reactions_tl(by.id) or types.MessageReactions(results=[]),
        )
        users, chats = self.entities_for(by.id, post.place)
        return types.Updates([update], users, chats, now(), 0)

    def read(self, by: User, post: Post, *, origin: Any = None) -> tuple[int, int]:
        """``by`` has read up to ``post``; the others see an outbox read marker. Returns (pts, pts_count)."""
        kind, cid, _ = post.place
        if kind == "channel":
            for uid in sorted(self.members(post.place) - {by.id}):
                self._plain(uid, types.UpdateReadChannelOutbox(cid, post.ids[0]), None)
            return 0, 0
        pts = self._user_update(
            by.id,
            lambda uid, pts: types.UpdateReadHistoryInbox(post.peer_for(uid), post.ids[uid], 0, pts, 1),
            1,
            post.place,
            origin,
        )
        for uid in sorted(self.members(post.place) - {by.id}):
            if uid in post.ids:
                self._user_update(
                    uid,
                    lambda uid, pts: types.UpdateReadHistoryOutbox(post.peer_for(uid), post.ids[uid], pts, 1),
                    1,
                    post.place,
                    None,
                )
        return pts, 1

    def typing(self, by: User, where: Where, active: bool, *, topic: int | None = None) -> None:
        action = types.SendMessageTypingAction() if active else types.SendMessageCancelAction()
        place = self.place_of(by.id, where)
        for uid in sorted(self.members(place) - {by.id}):
            if isinstance(where, User):
                update: Any = types.UpdateUserTyping(by.id, action)
            elif isinstance(where, Group):
                update = types.UpdateChatUserTyping(where.id, types.PeerUser(by.id), action)
            else:
                update = types.UpdateChannelUserTyping(
                    where.id, types.PeerUser(by.id), action, top_msg_id=topic
                )
            self._plain(uid, update, place)

    def add_member(self, actor: User, where: Group | Channel, user: User) -> Post:
        where.members.add(user.id)
        return self.send(actor, where, "", action=types.MessageActionChatAddUser([user.id]))

    def remove_member(self, actor: User, where: Group | Channel, user: User) -> Post:
        post = self.send(actor, where, "", action=types.MessageActionChatDeleteUser(user.id))
        where.members.discard(user.id)
        return post

    def create_topic(self, actor: User, channel: Channel, title: str) -> int:
        post = self.send(
            actor, channel, "", action=types.MessageActionTopicCreate(title=title, icon_color=0x6FB9F0)
        )
        return post.ids[0]

    # --- delivery -----------------------------------------------------------------------------------

    def _user_update(
        self, uid: int, build: Callable[[int, int], Any], count: int, place: Place, origin: Any
    ) -> int:
        box: Box = self.users[uid].box
        update = build(uid, box.pts + count)
        box.append(update, count)
        users, chats = self.entities_for(uid, place)
        self.push(uid, types.Updates([update], users, chats, now(), 0), origin)
        return box.pts

    def _channel_event(self, channel: Channel, origin: Any, build: Callable[[int], Any], count: int) -> None:
        """Log a channel update (kept as ``build``: each reader gets its own view) and push it to members.

        Channel updates go to every session, the acting one too (its copy of a result it already has is
        a duplicate by ``pts``): a client that applied a channel ``affectedMessages`` to the wrong box
        (Telethon 1.45 files it under the account's) still sees the channel's ``pts`` move."""
        channel.box.append(build, count)
        for uid in sorted(channel.members):
            users, chats = self.entities_for(uid, ("channel", channel.id, 0))
            self.push(uid, types.Updates([build(uid)], users, chats, now(), 0), None)

    def _plain(self, uid: int, update: Any, place: Place | None) -> None:
        users, chats = self.entities_for(uid, place) if place else ([], [])
        self.push(uid, types.Updates([update], users, chats, now(), 0), None)
