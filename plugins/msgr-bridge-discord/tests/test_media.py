"""Inbound attachments through the core's media helper (``ctx.media.receive``) and the Discord fake: each
file is streamed from the CDN URL into share-link storage before the message is pushed, once per attachment
even when the event comes again, and one over the cap is refused while read (the message keeps Discord's
URL with a note)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from msgr_bridge_discord.media import InboundFiles

from msgr_bridge.errors import BridgeError, PermanentError, TransientError
from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.schema import Attachment, Message
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.testing.fakes import HoldingSink, MemoryStateStore
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.media import local_shares
from msgr_bridge.testing.waiting import wait_until


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[ShareLinkService]:
    async with local_shares(tmp_path) as shares:
        yield shares


@pytest.fixture
def media(storage: ShareLinkService) -> Media:
    return Media(MediaRules(), shares=lambda: storage)


async def read_back(media: Media, attachment: Attachment) -> bytes:
    async with media.open(attachment) as back:
        return b"".join([chunk async for chunk in back.chunks])


def stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


async def test_a_file_from_the_other_user_lands_in_storage(world: Any, media: Media, tmp_path: Path) -> None:
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    live = await Live(world.connector(media=media)).start()
    try:
        data = bytes(range(256)) * 800
        fake.post(cid, bob, "look", files={"files[0]": ("dog.bin", data)})
        inbound = await live.wait_text("look")
        [received] = inbound.attachments
        assert received.url and received.url.startswith("https://b.example/s/") and received.size == len(data)
        assert received.name == "dog.bin" and await read_back(media, received) == data
        assert len(stored_files(tmp_path)) == 1
    finally:
        await live.stop()


async def test_a_replayed_message_does_not_store_its_file_twice(
    world: Any, media: Media, tmp_path: Path
) -> None:
    fake, cid, bob, state = world.fake, world.channel["id"], world.bob["id"], MemoryStateStore()
    first = world.connector(state=state, sink=HoldingSink(), media=media)  # nothing it receives is committed
    await first.connect()
    task = asyncio.create_task(first.subscribe())
    fake.post(cid, bob, "a file", files={"files[0]": ("a.txt", b"once\n" * 100)})
    await wait_until(lambda: len(first.ctx.sink.payloads) == 1)  # type: ignore[attr-defined]
    assert len(stored_files(tmp_path)) == 1
    task.cancel()  # the bridge dies before committing: Discord replays the message on RESUME
    await fake.gateway.drop_connections()
    await asyncio.gather(task, return_exceptions=True)
    live = await Live(world.connector(state=state, media=media)).start()
    try:
        assert live.connector.gateway is not None and live.connector.gateway.resumed
        again = await live.wait_text("a file")
        stored_before = first.ctx.sink.payloads[0]["media"]  # type: ignore[attr-defined]
        assert [a.url for a in again.attachments] == [v["url"] for v in stored_before.values()]
        assert await read_back(media, again.attachments[0]) == b"once\n" * 100
        assert len(stored_files(tmp_path)) == 1
    finally:
        await live.stop()
        await first.disconnect()


async def test_a_file_over_the_cap_is_kept_as_discords_url_with_a_note(
    world: Any, storage: ShareLinkService, tmp_path: Path
) -> None:
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    small = Media(MediaRules(max_bytes=1000), shares=lambda: storage)
    live = await Live(world.connector(media=small)).start()
    try:
        fake.post(cid, bob, "big", files={"files[0]": ("big.bin", b"x" * 5000)})
        inbound = await live.wait_text("big")
        [kept] = inbound.attachments
        assert kept.url and kept.url.startswith(fake.base_url) and kept.size == 5000
        [payload] = [p for p in live.sink.payloads if p.get("media")]
        [note] = payload["media"].values()
        assert "too large" in note["note"] and "1000 bytes" in note["note"]
        assert stored_files(tmp_path) == []
    finally:
        await live.stop()


class EndlessCdn:
    """A CDN body that never ends (or a download that fails), to show where reading stops."""

    def __init__(self, fail: BridgeError | None = None) -> None:
        self.read, self.fail = 0, fail

    async def download(self, url: str) -> AsyncIterator[bytes]:
        if self.fail is not None:
            raise self.fail
        while True:
            self.read += 1
            yield b"x" * 1000


EVENT = {"attachments": [{"id": "1", "filename": "a.bin", "url": "https://cdn.discordapp.com/a"}]}


def inbound(cdn: EndlessCdn, media: Media, state: Any = None) -> InboundFiles:
    state = state or MemoryStateStore().map("f", max_entries=10)
    return InboundFiles(cdn.download, media, state, None, structlog.get_logger())


async def test_a_file_over_the_cap_is_refused_while_reading(storage: ShareLinkService) -> None:
    cdn = EndlessCdn()
    result = await inbound(cdn, Media(MediaRules(max_bytes=10_000), shares=lambda: storage)).store(EVENT)
    assert "too large" in result["1"]["note"] and 10 <= cdn.read <= 12  # never read whole


async def test_a_transient_download_failure_keeps_the_message_and_retries_later(media: Media) -> None:
    cdn = EndlessCdn(fail=TransientError("Discord's CDN answered HTTP 503"))
    state = MemoryStateStore().map("f", max_entries=10)
    first = await inbound(cdn, media, state).store(EVENT)
    assert "503" in first["1"]["note"] and "url" not in first["1"]
    assert await state.get("1") is None  # not remembered: the next delivery tries again
    cdn.fail = PermanentError("gone")
    assert "gone" in (await inbound(cdn, media, state).store(EVENT))["1"]["note"]


async def test_only_discords_hosts_are_fetched(world: Any, media: Media) -> None:
    live = await Live(world.connector(media=media)).start()
    try:
        files = live.connector.files  # type: ignore[attr-defined]
        for url in (
            "http://169.254.169.254/latest/meta-data",
            "file:///etc/passwd",
            "https://evil.example/x",
        ):
            event = {"attachments": [{"id": url, "filename": "x", "url": url}]}
            assert "not a Discord attachment URL" in (await files.store(event))[url]["note"]
    finally:
        await live.stop()


async def test_a_file_missed_while_away_is_stored_by_catch_up(
    world: Any, media: Media, tmp_path: Path
) -> None:
    fake, cid, bob = world.fake, world.channel["id"], world.bob["id"]
    live = await Live(world.connector(media=media)).start()
    fake.post(cid, bob, "seen")
    await live.wait_text("seen")
    await live.stop()
    data = b"sent while the bridge was down\n" * 300
    fake.post(cid, bob, "missed", files={"files[0]": ("away.txt", data)})
    fake.gateway.invalidate_sessions()  # no RESUME: the sync pages the history
    await live.start()
    try:
        assert live.snapshot is not None
        [message] = [e for e in live.events(list(live.snapshot.history)) if isinstance(e, Message)]
        [received] = message.attachments
        assert received.url and received.url.startswith("https://b.example/s/")
        assert await read_back(media, received) == data and len(stored_files(tmp_path)) == 1
    finally:
        await live.stop()
