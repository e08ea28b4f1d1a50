"""Media both ways over a real Synapse. Outbound bytes come from the core's media helper (``ctx.media``),
streamed into the upload; the connector never reads a local file or fetches a URL itself (issue #10
item 12): a ``file:`` attachment fails with ``AttachmentRefused`` and nothing reaches the room."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from matrix_peer import Peer, Running, start
from mautrix.types import RoomID
from msgr_bridge_matrix import MatrixConnector
from test_matrix_messages import wait_message

from msgr_bridge.errors import AttachmentRefused
from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.schema import Attachment, OutboundMessage
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.sdk.urls import AddressRules
from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.media import FileServer, local_shares
from msgr_bridge.testing.synapse import MAX_UPLOAD_BYTES, SynapseServer


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    async with FileServer() as server:
        yield server


async def running_with(synapse: SynapseServer, me: Peer, media: Media) -> Running:
    sink = CollectingSink()
    ctx = make_context(
        "matrix",
        remote_user_id=me.user_id,
        sink=sink,
        settings={"homeserver": synapse.base_url, "user_id": me.user_id},
        secrets={"password": me.password},
        media=media,
    )
    return await start(MatrixConnector(ctx), sink)


@pytest.fixture
async def shares(tmp_path: Path) -> AsyncIterator[ShareLinkService]:
    async with local_shares(tmp_path) as shares:
        yield shares


async def test_media_both_ways(
    synapse: SynapseServer, me: Peer, other: Peer, files: FileServer, shares: ShareLinkService
) -> None:
    # the operator allows remote fetches, and this loopback test server
    rules = MediaRules(fetch_remote=True, addresses=AddressRules.allowing(["127.0.0.1/32"]))
    media = Media(rules, shares=lambda: shares)
    running = await running_with(synapse, me, media)
    try:
        caps = running.connector.conversation_capabilities("any")
        assert caps.attachments[0].max_size == MAX_UPLOAD_BYTES
        room = await other.room_with(me, direct=True)
        data = bytes(range(256)) * 40
        for path, url in (
            ("/blob.bin", files.serve("/blob.bin", data)),
            ("/s", files.stream("/s", total=3 * 64 * 1024)),
        ):
            att = Attachment(name="blob.bin", mime_type="application/octet-stream", url=url)
            result = await running.connector.send_message(
                room, OutboundMessage(txn_id=path, attachments=(att,))
            )
            seen = await other.wait_for(lambda r, e, i=result.remote_id: e.get("event_id") == i)
            assert seen["content"]["msgtype"] == "m.file"
            want = data if path == "/blob.bin" else b"x" * (3 * 64 * 1024)  # no Content-Length: spooled
            assert await other.client.download_media(seen["content"]["url"]) == want
            assert seen["content"]["info"]["size"] == len(want)
        # inbound: the other person uploads an image
        png = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100
        mxc = await other.client.upload_media(png, "image/png", "pic.png")
        content = {
            "msgtype": "m.image",
            "body": "pic.png",
            "url": mxc,
            "info": {"mimetype": "image/png", "size": len(png)},
        }
        event_id = str(await other.client.send_message_event(RoomID(room), "m.room.message", content))
        msg = await wait_message(running, event_id)
        (inbound,) = msg.attachments
        assert (inbound.name, inbound.mime_type, inbound.size, inbound.url) == (
            "pic.png",
            "image/png",
            len(png),
            mxc,
        )
        assert msg.text == ""
        stored = await running.connector.store_media(inbound)  # streamed into share-link storage
        assert stored.size == len(png)
        async with media.open(Attachment(name="pic.png", url=stored.url)) as back:
            assert b"".join([c async for c in back.chunks]) == png
    finally:
        await running.stop()


async def test_local_files_and_private_urls_are_never_read_nor_posted(
    synapse: SynapseServer, me: Peer, other: Peer, files: FileServer, tmp_path: object
) -> None:
    secret = __import__("pathlib").Path(str(tmp_path)) / "keystore.key"
    secret.write_bytes(b"the keystore key")
    loopback = files.serve("/internal", b"internal data")
    running = await running_with(synapse, me, Media(MediaRules(fetch_remote=True)))
    try:
        room = await other.room_with(me, direct=True)
        for url in (secret.as_uri(), str(secret), loopback):
            att = Attachment(name="k", mime_type="text/plain", url=url)
            with pytest.raises(AttachmentRefused):
                await running.connector.send_message(room, OutboundMessage(txn_id=url, attachments=(att,)))
        marker = str(await other.client.send_text(RoomID(room), "after"))
        await other.wait_for(lambda r, e: e.get("event_id") == marker)
        posted = [e for r, e in other.seen if r == room and e.get("type") == "m.room.message"]
        assert [e["event_id"] for e in posted] == [marker]  # only the other person's own message
        assert "/internal" not in files.sent  # the loopback server was never asked
    finally:
        await running.stop()


async def test_a_file_too_large_for_the_homeserver_is_refused_while_reading(
    synapse: SynapseServer, me: Peer, other: Peer, files: FileServer
) -> None:
    media = Media(MediaRules(fetch_remote=True, addresses=AddressRules.allowing(["127.0.0.1/32"])))
    running = await running_with(synapse, me, media)
    try:
        room = await other.room_with(me, direct=True)
        url = files.stream("/huge", total=MAX_UPLOAD_BYTES * 8)
        att = Attachment(name="huge.bin", url=url)
        with pytest.raises(AttachmentRefused, match="larger than the limit"):
            await running.connector.send_message(room, OutboundMessage(txn_id="huge", attachments=(att,)))
        await files.finished["/huge"].wait()
        assert files.sent["/huge"] < MAX_UPLOAD_BYTES * 4
    finally:
        await running.stop()
