"""The TL methods the fake answers, each with the real result type of Telethon's schema.

A method the fake does not implement is answered ``400 METHOD_NOT_IMPLEMENTED_BY_FAKE`` and recorded in
``FakeTelegram.protocol_errors`` (so a test fails instead of passing on a half-answered exchange).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from telethon.password import big_num_for_hash, compute_hash, num_bytes_for_hash, sha256, xor
from telethon.tl import functions, types

from .actions import Where
from .wire import DH_G, DH_PRIME, to_bytes
from .world import Channel, User, now

if TYPE_CHECKING:
    from . import Connection, FakeTelegram


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code, self.message = code, message


Handler = Callable[["FakeTelegram", "Connection", Any], Awaitable[Any]]
HANDLERS: dict[type, Handler] = {}
UNAUTHORIZED_OK: set[type] = set()
"""Methods a connection may call before it is logged in."""


def method(*request_types: type, public: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for request_type in request_types:
            HANDLERS[request_type] = handler
            if public:
                UNAUTHORIZED_OK.add(request_type)
        return handler

    return register


def me(fake: FakeTelegram, conn: Connection) -> User:
    user = fake.user_of(conn)
    if user is None:
        raise RpcFailure(401, "AUTH_KEY_UNREGISTERED")
    return user


def resolve(fake: FakeTelegram, viewer: User, peer: Any) -> Where:
    """An input peer as the viewer names it, or ``PEER_ID_INVALID`` (wrong id or access hash)."""
    world = fake.world
    if isinstance(peer, types.InputPeerSelf):
        return viewer
    if isinstance(peer, types.InputPeerUser | types.InputUser):
        user = world.users.get(peer.user_id)
        if user is not None and user.access_hash == peer.access_hash:
            return user
    elif isinstance(peer, types.InputPeerChat):
        group = world.groups.get(peer.chat_id)
        if group is not None and viewer.id in group.members:
            return group
    elif isinstance(peer, types.InputPeerChannel | types.InputChannel):
        channel = world.channels.get(peer.channel_id)
        if channel is not None and channel.access_hash == peer.access_hash and viewer.id in channel.members:
            return channel
    raise RpcFailure(400, "PEER_ID_INVALID")


def updates_for(fake: FakeTelegram, viewer: User, where: Where, *updates: Any) -> types.Updates:
    users, chats = fake.world.entities_for(viewer.id, fake.world.place_of(viewer.id, where))
    return types.Updates(list(updates), users, chats, now(), 0)


def state_of(user: User) -> types.updates.State:
    return types.updates.State(pts=user.box.pts, qts=0, date=now(), seq=0, unread_count=0)


# --- connection and account -------------------------------------------------------------------------------


@method(functions.help.GetConfigRequest, public=True)
async def get_config(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    option = types.DcOption(id=2, ip_address=fake.host, port=fake.port)
    return types.Config(
        date=now(), expires=now() + timedelta(hours=1), test_mode=False, this_dc=2, dc_options=[option],
        dc_txt_domain_name="fake", chat_size_max=200, megagroup_size_max=200000, forwarded_count_max=100,
        online_update_period_ms=210000, offline_blur_timeout_ms=5000, offline_idle_timeout_ms=30000,
        online_cloud_timeout_ms=300000, notify_cloud_delay_ms=30000, notify_default_delay_ms=1500,
        push_chat_period_ms=60000, push_chat_limit=2, edit_time_limit=172800, revoke_time_limit=2147483647,
        revoke_pm_time_limit=2147483647, rating_e_decay=2419200, stickers_recent_limit=200,
        channels_read_media_period=604800, call_receive_timeout_ms=20000, call_ring_timeout_ms=90000,
        call_connect_timeout_ms=30000, call_packet_timeout_ms=10000, me_url_prefix="https://t.me/",
        caption_length_max=1024, message_length_max=4096, webfile_dc_id=2,
    )  # fmt: skip


@method(functions.users.GetUsersRequest)
async def get_users(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    found = []
    for wanted in request.id:
        if isinstance(wanted, types.InputUserSelf):
            found.append(viewer.tl(viewer.id))
        elif (user := fake.world.users.get(getattr(wanted, "user_id", 0))) is not None:
            found.append(user.tl(viewer.id))
    return found


@method(functions.users.GetFullUserRequest)
async def get_full_user(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    user = viewer if isinstance(request.id, types.InputUserSelf) else resolve(fake, viewer, request.id)
    assert isinstance(user, User)
    full = types.UserFull(
        id=user.id,
        settings=types.PeerSettings(),
        notify_settings=types.PeerNotifySettings(),
        common_chats_count=0,
    )
    return types.users.UserFull(full_user=full, chats=[], users=[user.tl(viewer.id)])


@method(functions.contacts.GetContactsRequest)
async def get_contacts(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    users = [fake.world.users[uid] for uid in sorted(viewer.contacts)]
    contacts = [types.Contact(user_id=u.id, mutual=viewer.id in u.contacts) for u in users]
    return types.contacts.Contacts(contacts=contacts, saved_count=0, users=[u.tl(viewer.id) for u in users])


# --- login ------------------------------------------------------------------------------------------------


@method(functions.auth.SendCodeRequest, public=True)
async def send_code(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    user = fake.world.user_by_phone(request.phone_number)
    if user is None:
        raise RpcFailure(400, "PHONE_NUMBER_INVALID")
    code_hash = os.urandom(8).hex()
    fake.login_codes[code_hash] = user.id
    return types.auth.SentCode(
        type=types.auth.SentCodeTypeApp(length=len(user.login_code)), phone_code_hash=code_hash
    )


@method(functions.auth.SignInRequest, public=True)
async def sign_in(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    uid = fake.login_codes.get(request.phone_code_hash)
    user = fake.world.users.get(uid or 0)
    if user is None or fake.world.user_by_phone(request.phone_number) is not user:
        raise RpcFailure(400, "PHONE_CODE_EXPIRED")
    if request.phone_code != user.login_code:
        raise RpcFailure(400, "PHONE_CODE_INVALID")
    del fake.login_codes[request.phone_code_hash]
    return fake.authorize(conn, user)


@method(functions.auth.ExportLoginTokenRequest, public=True)
async def export_login_token(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    for token, (key_id, uid) in list(fake.login_tokens.items()):
        if key_id == conn.key_id and uid is not None:
            del fake.login_tokens[token]
            return types.auth.LoginTokenSuccess(fake.authorize(conn, fake.world.users[uid]))
    token = os.urandom(16)
    fake.login_tokens[token] = (conn.key_id, None)
    return types.auth.LoginToken(expires=now() + timedelta(seconds=30), token=token)


@method(functions.account.GetPasswordRequest, public=True)
async def get_password(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    user = fake.world.users.get(fake.pending_2fa.get(conn.key_id, 0))
    if user is None or user.password is None:
        return types.account.Password(
            new_algo=types.PasswordKdfAlgoUnknown(), new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
            secure_random=os.urandom(32),
        )  # fmt: skip
    algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=os.urandom(32), salt2=os.urandom(16), g=DH_G, p=DH_PRIME.to_bytes(256, "big")
    )
    v = pow(DH_G, int.from_bytes(compute_hash(algo, user.password), "big"), DH_PRIME)
    b = int.from_bytes(os.urandom(256), "big") % DH_PRIME
    k = int.from_bytes(sha256(num_bytes_for_hash(algo.p), big_num_for_hash(DH_G)), "big")
    srp_b = (k * v + pow(DH_G, b, DH_PRIME)) % DH_PRIME
    srp_id = int.from_bytes(os.urandom(8), "little", signed=True)
    fake.srp[srp_id] = (algo, v, b, srp_b, user.id)
    return types.account.Password(
        has_password=True, current_algo=algo, srp_B=to_bytes(srp_b), srp_id=srp_id, new_algo=algo,
        new_secure_algo=types.SecurePasswordKdfAlgoUnknown(), secure_random=os.urandom(32),
    )  # fmt: skip


@method(functions.auth.CheckPasswordRequest, public=True)
async def check_password(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    """The server's half of SRP (core.telegram.org/api/srp): the client proves it knows the password."""
    check = request.password
    entry = fake.srp.pop(getattr(check, "srp_id", 0), None)
    if entry is None:
        raise RpcFailure(400, "SRP_ID_INVALID")
    algo, v, b, srp_b, uid = entry
    a_bytes, b_bytes = num_bytes_for_hash(check.A), big_num_for_hash(srp_b)
    u = int.from_bytes(sha256(a_bytes, b_bytes), "big")
    shared = pow(int.from_bytes(check.A, "big") * pow(v, u, DH_PRIME), b, DH_PRIME)
    p_hash, g_hash = sha256(num_bytes_for_hash(algo.p)), sha256(big_num_for_hash(DH_G))
    expected = sha256(
        xor(p_hash, g_hash), sha256(algo.salt1), sha256(algo.salt2), a_bytes, b_bytes,
        sha256(big_num_for_hash(shared)),
    )  # fmt: skip
    if not hmac.compare_digest(expected, bytes(check.M1)):
        raise RpcFailure(400, "PASSWORD_HASH_INVALID")
    return fake.authorize(conn, fake.world.users[uid], password_checked=True)


# --- updates ----------------------------------------------------------------------------------------------


@method(functions.updates.GetStateRequest)
async def get_state(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    return state_of(me(fake, conn))


@method(functions.updates.GetDifferenceRequest)
async def get_difference(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    pending = viewer.box.since(request.pts)
    if pending is None:
        return types.updates.DifferenceTooLong(pts=viewer.box.pts)
    if not pending:
        return types.updates.DifferenceEmpty(date=now(), seq=0)
    batch = pending[: fake.difference_limit]
    messages = [u.message for u in batch if isinstance(u, types.UpdateNewMessage)]
    others = [u for u in batch if not isinstance(u, types.UpdateNewMessage)]
    users = [u.tl(viewer.id) for u in fake.world.users.values()]
    chats = [g.tl(viewer.id) for g in fake.world.groups.values() if viewer.id in g.members]
    if len(batch) < len(pending):
        state = types.updates.State(pts=batch[-1].pts, qts=0, date=now(), seq=0, unread_count=0)
        return types.updates.DifferenceSlice(messages, [], others, chats, users, state)
    return types.updates.Difference(messages, [], others, chats, users, state_of(viewer))


@method(functions.updates.GetChannelDifferenceRequest)
async def get_channel_difference(fake: FakeTelegram, conn: Connection, request: Any) -> Any:
    viewer = me(fake, conn)
    channel = resolve(fake, viewer, request.channel)
    assert isinstance(channel, Channel)
    pending = channel.box.since(request.pts)
    if pending is None:
        raise RpcFailure(400, "PERSISTENT_TIMESTAMP_OUTDATED")
    if not pending:
        return types.updates.ChannelDifferenceEmpty(pts=channel.box.pts, final=True)
    batch = [build(viewer.id) for build in pending[: max(1, min(request.limit, 1000))]]
    final = len(batch) == len(pending)
    kinds = (types.UpdateNewChannelMessage,)
    users, chats = fake.world.entities_for(viewer.id, ("channel", channel.id, 0))
    return types.updates.ChannelDifference(
        pts=channel.box.pts if final else batch[-1].pts,
        new_messages=[u.message for u in batch if isinstance(u, kinds)],
        other_updates=[u for u in batch if not isinstance(u, kinds)],
        chats=chats, users=users, final=final,
    )  # fmt: skip
