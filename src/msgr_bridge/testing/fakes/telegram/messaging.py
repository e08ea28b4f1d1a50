"""The fake's message methods: send, edit, delete, react, read, typing, history and dialogs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telethon.tl import functions, types

from .methods import RpcFailure, me, method, resolve, updates_for
from .world import Channel, Post, User

if TYPE_CHECKING:
    from . import Connection, FakeTelegram

MAX_TEXT = 4096
RANDOM_IDS_MAX = 10_000


def _reply_target(request: Any) -> tuple[int | None, int | None]:
    """(message replied to, forum topic) from an ``InputReplyToMessage``."""
    reply = getattr(request, "reply_to", None)
    if not isinstance(reply, types.InputReplyToMessage):
        return None, None
    return reply.reply_to_msg_id, reply.top_msg_id


def _posts(fake: FakeTelegram, viewer: User, where: Any, ids: list[int]) -> list[Post]:
    found = [fake.world.find(viewer.id, where, i) for i in ids]
    return [p for p in found if p is not None]


@method(functions.messages.SendMessageRequest)
async def send_message(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    where = resolve(fake, viewer, request.peer)
    if not request.message.strip():
        raise RpcFailure(400, "MESSAGE_EMPTY")
    if len(request.message) > MAX_TEXT:
        raise RpcFailure(400, "MESSAGE_TOO_LONG")
    if request.random_id in viewer.random_ids:
        raise RpcFailure(500, "RANDOM_ID_DUPLICATE")
    reply_to, topic = _reply_target(request)
    if isinstance(where, Channel) and where.forum and reply_to is not None and topic is None:
        topic = reply_to if reply_to in where.posts and where.posts[reply_to].topic is None else None
    post = fake.world.send(
        viewer, where, request.message, entities=request.entities, reply_to=reply_to, topic=topic, origin=conn
    )
    viewer.random_ids[request.random_id] = post
    while len(viewer.random_ids) > RANDOM_IDS_MAX:
        del viewer.random_ids[next(iter(viewer.random_ids))]
    if isinstance(where, Channel):
        update: Any = types.UpdateNewChannelMessage(post.view(viewer.id), where.box.pts, 1)
    else:
        update = types.UpdateNewMessage(post.view(viewer.id), viewer.box.pts, 1)
    return updates_for(
        fake, viewer, where, types.UpdateMessageID(post.id_for(viewer.id), request.random_id), update
    )


@method(functions.messages.EditMessageRequest)
async def edit_message(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    where = resolve(fake, viewer, request.peer)
    post = fake.world.find(viewer.id, where, request.id)
    if post is None:
        raise RpcFailure(400, "MESSAGE_ID_INVALID")
    if post.sender != viewer.id:
        raise RpcFailure(403, "MESSAGE_AUTHOR_REQUIRED")
    if request.message is None or request.message == post.text:
        raise RpcFailure(400, "MESSAGE_NOT_MODIFIED")
    fake.world.edit(post, request.message, entities=request.entities, origin=conn)
    if isinstance(where, Channel):
        update: Any = types.UpdateEditChannelMessage(post.view(viewer.id), where.box.pts, 1)
    else:
        update = types.UpdateEditMessage(post.view(viewer.id), viewer.box.pts, 1)
    return updates_for(fake, viewer, where, update)


@method(functions.messages.DeleteMessagesRequest)
async def delete_messages(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    posts = [viewer.posts[i] for i in request.id if i in viewer.posts]
    pts, count = fake.world.delete(viewer.id, posts, revoke=bool(request.revoke), origin=conn)
    return types.messages.AffectedMessages(pts=pts or viewer.box.pts, pts_count=count)


@method(functions.channels.DeleteMessagesRequest)
async def delete_channel_messages(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    channel = resolve(fake, viewer, request.channel)
    posts = _posts(fake, viewer, channel, request.id)
    if (
        any(p.sender != viewer.id for p in posts)
        and isinstance(channel, Channel)
        and channel.owner != viewer.id
    ):
        raise RpcFailure(403, "MESSAGE_DELETE_FORBIDDEN")
    pts, count = fake.world.delete(viewer.id, posts, origin=conn)
    return types.messages.AffectedMessages(pts=pts, pts_count=count)


@method(functions.messages.SendReactionRequest)
async def send_reaction(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    where = resolve(fake, viewer, request.peer)
    post = fake.world.find(viewer.id, where, request.msg_id)
    if post is None:
        raise RpcFailure(400, "MESSAGE_ID_INVALID")
    emoji = None
    for reaction in request.reaction or []:
        if not isinstance(reaction, types.ReactionEmoji):
            raise RpcFailure(400, "REACTION_INVALID")
        emoji = reaction.emoticon
    return fake.world.react(viewer, post, emoji, origin=conn)


@method(functions.messages.ReadHistoryRequest, functions.channels.ReadHistoryRequest)
async def read_history(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    channel_read = isinstance(request, functions.channels.ReadHistoryRequest)
    where = resolve(fake, viewer, request.channel if channel_read else request.peer)
    place = fake.world.place_of(viewer.id, where)
    source = where.posts if isinstance(where, Channel) else viewer.posts
    candidates = [p for mid, p in source.items() if mid <= request.max_id and p.place == place]
    if candidates:
        pts, count = fake.world.read(viewer, max(candidates, key=lambda p: p.id_for(viewer.id)), origin=conn)
    else:
        pts, count = viewer.box.pts, 0
    if channel_read:
        return True
    return types.messages.AffectedMessages(pts=pts, pts_count=count)


@method(functions.messages.SetTypingRequest)
async def set_typing(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    where = resolve(fake, viewer, request.peer)
    active = not isinstance(request.action, types.SendMessageCancelAction)
    fake.world.typing(viewer, where, active, topic=request.top_msg_id)
    fake.typing_seen.append((viewer.id, where, active))
    return True


@method(functions.messages.GetHistoryRequest)
async def get_history(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    where = resolve(fake, viewer, request.peer)
    place = fake.world.place_of(viewer.id, where)
    source = where.posts if isinstance(where, Channel) else viewer.posts
    ids = sorted((i for i, p in source.items() if p.place == place), reverse=True)
    if request.offset_id:
        ids = [i for i in ids if i < request.offset_id]
    if request.min_id:
        ids = [i for i in ids if i > request.min_id]
    ids = ids[request.add_offset if request.add_offset > 0 else 0 :][: max(1, min(request.limit or 100, 100))]
    messages = [source[i].view(viewer.id) for i in ids]
    users, chats = fake.world.entities_for(viewer.id, place)
    return types.messages.Messages(messages=messages, topics=[], chats=chats, users=users)


@method(functions.messages.GetDialogsRequest)
async def get_dialogs(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    world = fake.world
    tops: dict[Any, Post] = {}
    for post in viewer.posts.values():
        if post.place not in tops or post.ids[viewer.id] > tops[post.place].ids[viewer.id]:
            tops[post.place] = post
    for channel in world.channels.values():
        if viewer.id in channel.members and channel.posts:
            tops[("channel", channel.id, 0)] = channel.posts[max(channel.posts)]
    dialogs, messages, users, chats = [], [], {}, {}
    for place, post in tops.items():
        peer = post.peer_for(viewer.id)
        pts = world.channels[place[1]].box.pts if place[0] == "channel" else None
        dialogs.append(
            types.Dialog(
                peer=peer, top_message=post.id_for(viewer.id), read_inbox_max_id=0, read_outbox_max_id=0,
                unread_count=0, unread_mentions_count=0, unread_reactions_count=0, unread_poll_votes_count=0,
                notify_settings=types.PeerNotifySettings(), pts=pts,
            )
        )  # fmt: skip
        messages.append(post.view(viewer.id))
        us, cs = world.entities_for(viewer.id, place)
        users.update({u.id: u for u in us})
        chats.update({c.id: c for c in cs})
    for group in world.groups.values():
        if viewer.id in group.members:
            chats.setdefault(group.id, group.tl(viewer.id))
    return types.messages.Dialogs(dialogs, messages, list(chats.values()), list(users.values()))


@method(functions.channels.GetChannelsRequest)
async def get_channels(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    found = []
    for wanted in request.id:
        channel = fake.world.channels.get(getattr(wanted, "channel_id", 0))
        if channel is None or viewer.id not in channel.members:
            raise RpcFailure(400, "CHANNEL_INVALID")
        found.append(channel.tl(viewer.id))
    return types.messages.Chats(chats=found)
