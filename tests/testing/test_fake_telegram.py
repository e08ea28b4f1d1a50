"""The fake Telegram itself: a real Telethon client gets through the auth-key exchange and login, and what
the fake cannot read or does not implement is recorded loudly instead of half-answered."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

telethon = pytest.importorskip("telethon")  # the Telegram plugin brings Telethon

from telethon import TelegramClient, errors  # noqa: E402
from telethon.crypto import AuthKey, rsa  # noqa: E402
from telethon.sessions import StringSession  # noqa: E402
from telethon.tl import functions  # noqa: E402
from telethon.tl.tlobject import TLRequest  # noqa: E402

from msgr_bridge.testing.fakes.telegram import FakeTelegram  # noqa: E402
from msgr_bridge.testing.fakes.telegram.keys import PUBLIC_KEY_PEM  # noqa: E402


class UnknownRequest(TLRequest):
    """A constructor no TL schema has."""

    CONSTRUCTOR_ID = 0x0BADC0DE
    SUBCLASS_OF_ID = 0x0BADC0DE

    def _bytes(self) -> bytes:
        return struct.pack("<I", self.CONSTRUCTOR_ID)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    rsa.add_key(PUBLIC_KEY_PEM, old=False)
    server = await FakeTelegram().start()
    server.world.add_user("Alice", "15550001")
    yield server
    await server.stop()


async def client_for(fake: FakeTelegram) -> TelegramClient:
    session = StringSession()
    session.set_dc(2, fake.host, fake.port)
    client = TelegramClient(session, 1, "hash", connection_retries=0, auto_reconnect=False, request_retries=1)
    await client.connect()
    return client


async def test_login_and_unimplemented_method_is_recorded(fake: FakeTelegram) -> None:
    client = await client_for(fake)
    try:
        assert not await client.is_user_authorized()
        await client.send_code_request("+15550001")
        me = await client.sign_in("+15550001", "12345")
        assert me.first_name == "Alice" and await client.is_user_authorized()
        assert fake.protocol_errors == []
        with pytest.raises(errors.BadRequestError, match="METHOD_NOT_IMPLEMENTED_BY_FAKE"):
            await client(functions.help.GetNearestDcRequest())
        assert fake.protocol_errors == ["the fake does not implement GetNearestDcRequest"]
    finally:
        await client.disconnect()


async def test_an_unknown_constructor_is_recorded_and_ends_the_connection(fake: FakeTelegram) -> None:
    client = await client_for(fake)
    try:
        with pytest.raises((ConnectionError, EOFError, TimeoutError, OSError)):  # the fake hangs up
            await asyncio.wait_for(client(UnknownRequest()), 10)
    finally:
        await client.disconnect()
    assert len(fake.protocol_errors) == 1 and "0badc0de" in fake.protocol_errors[0].lower()


async def test_a_short_auth_key_still_works_after_a_string_session_round_trip(fake: FakeTelegram) -> None:
    """One key exchange in 256 gives a key with a leading zero byte, which Telethon keeps 255 bytes long and
    StringSession stores zero-padded at the end; the client reloaded from it must still be understood, and
    still be logged in."""
    short = AuthKey(b"\x01" * 255)
    fake.register_key(short)
    session = StringSession()
    session.set_dc(2, fake.host, fake.port)
    session.auth_key = short
    first = TelegramClient(session, 1, "hash", connection_retries=0, auto_reconnect=False)
    await first.connect()
    try:
        await first.send_code_request("+15550001")
        await first.sign_in("+15550001", "12345")
        saved = first.session.save()
    finally:
        await first.disconnect()
    again = TelegramClient(StringSession(saved), 1, "hash", connection_retries=0, auto_reconnect=False)
    await again.connect()  # an unknown key gets -404: AuthKeyNotFound
    try:
        assert await again.is_user_authorized()
    finally:
        await again.disconnect()
    assert fake.protocol_errors == []


def test_runs_standalone() -> None:
    command = [sys.executable, "-m", "msgr_bridge.testing.fakes.telegram"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.startswith("fake Telegram listening on 127.0.0.1:"), first
        finally:
            process.terminate()
            process.wait(10)


async def test_uploads_and_downloads_follow_telegrams_part_rules(fake: FakeTelegram) -> None:
    """A missing part, a wrong MD5, an oversized part or a download request across a 1 MiB block is refused
    as Telegram does; a whole upload becomes a document whose bytes come back in parts."""
    from telethon.tl import types

    client = await client_for(fake)
    try:
        await client.send_code_request("+15550001")
        await client.sign_in("+15550001", "12345")
        me = types.InputPeerSelf()

        def document(file_id: int, parts: int, md5: str = "") -> types.InputMediaUploadedDocument:
            return types.InputMediaUploadedDocument(types.InputFile(file_id, parts, "a.bin", md5), "x/y", [])

        async def refused(request: TLRequest) -> str:
            with pytest.raises(errors.RPCError) as raised:
                await client(request)
            return type(raised.value).__name__  # Telethon's class for Telegram's error name

        assert await refused(functions.upload.SaveFilePartRequest(1, 0, b"x" * (512 * 1024 + 1))) == (
            "FilePartTooBigError"
        )
        await client(functions.upload.SaveFilePartRequest(2, 1, b"tail"))
        missing = functions.messages.SendMediaRequest(me, document(2, 2), "", random_id=1)
        assert await refused(missing) == "FilePart0MissingError"
        await client(functions.upload.SaveFilePartRequest(3, 0, b"data"))
        wrong_md5 = functions.messages.SendMediaRequest(me, document(3, 1, "0" * 32), "", random_id=2)
        assert await refused(wrong_md5) == "Md5ChecksumInvalidError"
        data = bytes(range(256)) * 8
        await client(functions.upload.SaveFilePartRequest(4, 0, data[:1024]))
        await client(functions.upload.SaveFilePartRequest(4, 1, data[1024:]))
        await client(functions.messages.SendMediaRequest(me, document(4, 2), "", random_id=3))
        [stored] = fake.files.stored.values()
        assert stored.data == data and stored.name == "a.bin"
        location = types.InputDocumentFileLocation(stored.id, stored.access_hash, stored.file_reference, "")
        across = functions.upload.GetFileRequest(location, offset=1024 * 1023, limit=4096)
        assert await refused(across) == "LimitInvalidError"
        first = await client(functions.upload.GetFileRequest(location, offset=0, limit=1024))
        rest = await client(functions.upload.GetFileRequest(location, offset=1024, limit=4096))
        assert first.bytes + rest.bytes == data
        assert fake.protocol_errors == []
    finally:
        await client.disconnect()


def test_an_album_reaches_each_member_in_one_container() -> None:
    """``messages.sendMultiMedia`` as Telegram delivers it: one message per file sharing a ``grouped_id``,
    consecutive ``pts``, one ``Updates`` per member (one per message from another data centre)."""
    from telethon.tl import types

    from msgr_bridge.testing.fakes.telegram.actions import World
    from msgr_bridge.testing.fakes.telegram.files import Files

    pushed: list[tuple[int, types.Updates]] = []
    world = World(lambda uid, updates, origin: pushed.append((uid, updates)))
    alice, bob = world.add_user("Alice", "15550001"), world.add_user("Bob", "15550002")
    files = Files()
    stored = [files.add(b"x" * n, name=f"{n}.bin", mime_type="x/y") for n in (1, 2, 3)]
    posts = world.send_album(bob, alice, stored, "caption")
    assert sorted(uid for uid, _ in pushed) == sorted([alice.id, bob.id])
    for uid, container in pushed:
        messages = [u.message for u in container.updates]
        assert [m.id for m in messages] == [p.ids[uid] for p in posts]
        assert len({m.grouped_id for m in messages}) == 1 and messages[0].grouped_id
        assert [m.message for m in messages] == ["caption", "", ""]
        assert [u.pts for u in container.updates] == [1 + n for n in (1, 2, 3)]
    pushed.clear()
    world.send_album(bob, alice, stored[:2], split=True)
    assert len(pushed) == 4 and all(len(c.updates) == 1 for _, c in pushed)
