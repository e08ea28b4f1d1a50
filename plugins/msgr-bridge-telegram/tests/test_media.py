"""Files both ways through the fake Telegram: outbound streamed from the core's media helper into
``upload.saveFilePart`` / ``saveBigFilePart`` and ``messages.sendMedia``; inbound downloaded with
``upload.getFile`` into share-link storage, capped while reading."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from msgr_bridge_telegram import TelegramConnector, transfer
from telethon.tl import types

from msgr_bridge.errors import AttachmentRefused
from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.schema import Attachment, Message, OutboundMessage
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.harness import Live


async def linked(telegram: Any) -> dict[str, Any]:
    flow = TelegramConnector.link_flow(telegram.settings)
    await flow.start()
    result = await flow.submit(telegram.answers())
    settings = {**telegram.settings, **result.settings}
    return {"remote_user_id": result.remote_user_id, "settings": settings, "secrets": result.secrets}


async def chunks_of(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):  # not a multiple of Telegram's part size
        yield data[start : start + size]


async def stored_bytes(media: Media, url: str) -> bytes:
    async with media.open(Attachment(name="back", url=url)) as stream:
        return b"".join([chunk async for chunk in stream.chunks])


def connector(account: dict[str, Any], media: Media, **settings: Any) -> TelegramConnector:
    account = {**account, "settings": {**account["settings"], "history_import": 0, **settings}}
    return TelegramConnector(make_context("telegram", sink=CollectingSink(), media=media, **account))


async def test_a_photo_and_a_document_sent_through_the_bridge_arrive_with_their_bytes(
    telegram: Any, shares: ShareLinkService, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, bob = telegram.fake, telegram.bob
    media = Media(MediaRules(), shares=lambda: shares)
    photo, document = os.urandom(300_000), os.urandom(1_300_000)
    kept_photo = await media.receive(chunks_of(photo), name="cat.jpg", mime_type="image/jpeg")
    kept_doc = await media.receive(chunks_of(document), name="report.pdf", mime_type="application/pdf")
    monkeypatch.setattr(transfer, "SMALL_FILE_MAX", 1_000_000)  # the document goes as a "big file"
    async with Live(connector(await linked(telegram), media)) as live:
        files = (
            Attachment(name="cat.jpg", mime_type="image/jpeg", url=kept_photo.url),
            Attachment(name="report.pdf", mime_type="application/pdf", url=kept_doc.url),
        )
        message = OutboundMessage(txn_id="txn-files", text="two files", attachments=files)
        sent = await live.connector.send_message(f"user:{bob.id}", message)
        await telegram.until(lambda: len([p for p in bob.posts.values() if p.media is not None]) == 2)
    first, second = sorted(
        (p for p in bob.posts.values() if p.media is not None), key=lambda p: p.ids[bob.id]
    )
    assert first.media.photo and first.media.data == photo and first.text == "two files"
    assert not second.media.photo and second.media.data == document and second.text == ""
    assert second.media.name == "report.pdf" and second.media.mime_type == "application/pdf"
    assert sent.remote_id == str(first.ids[telegram.alice.id])
    names = [r.name for r in fake.requests]
    assert names.count("SaveFilePartRequest") == 1  # 300 kB: one part, with its MD5 checked
    assert names.count("SaveBigFilePartRequest") == 3  # 1.3 MB in 512 KiB parts
    assert [p.text for p in bob.posts.values()].count("two files") == 1


async def test_a_retried_file_send_is_not_posted_twice(telegram: Any, shares: ShareLinkService) -> None:
    bob = telegram.bob
    media = Media(MediaRules(), shares=lambda: shares)
    kept = await media.receive(chunks_of(b"%PDF once"), name="a.pdf", mime_type="application/pdf")
    message = OutboundMessage(
        txn_id="txn-retry", text="once", attachments=(Attachment(name="a.pdf", url=kept.url),)
    )
    async with Live(connector(await linked(telegram), media)) as live:
        first = await live.connector.send_message(f"user:{bob.id}", message)
        again = await live.connector.send_message(f"user:{bob.id}", message)  # the outbox retries
    assert again.remote_id == first.remote_id
    assert [p.text for p in bob.posts.values()].count("once") == 1


async def test_a_local_path_is_refused_before_anything_is_uploaded(
    telegram: Any, shares: ShareLinkService
) -> None:
    media = Media(MediaRules(), shares=lambda: shares)
    message = OutboundMessage(
        txn_id="txn-local", text="x", attachments=(Attachment(name="passwd", url="file:///etc/passwd"),)
    )
    async with Live(connector(await linked(telegram), media)) as live:
        with pytest.raises(AttachmentRefused):
            await live.connector.send_message(f"user:{telegram.bob.id}", message)
    assert not any(r.name.startswith("Save") for r in telegram.fake.requests)


async def test_files_from_the_other_side_are_stored_with_their_bytes_and_size(
    telegram: Any, shares: ShareLinkService
) -> None:
    fake, bob, alice = telegram.fake, telegram.bob, telegram.alice
    media = Media(MediaRules(), shares=lambda: shares)
    data, picture = os.urandom(700_000), os.urandom(50_000)
    document = fake.files.add(data, name="notes.bin", mime_type="application/octet-stream")
    photo = fake.files.add(picture, name="p.jpg", mime_type="image/jpeg", photo=True)
    async with Live(connector(await linked(telegram), media)) as live:
        fake.world.send(bob, alice, "here", media=document)
        fake.world.send(bob, alice, "look", media=photo)
        [got] = (await live.wait_text("here")).attachments
        [pic] = (await live.wait_text("look")).attachments
    assert got.name == "notes.bin" and got.size == len(data) and got.remote_id is None
    assert got.url is not None and shares.token_in(got.url) is not None
    assert await stored_bytes(media, got.url) == data
    assert pic.mime_type == "image/jpeg" and pic.size == len(picture) and pic.url is not None
    assert await stored_bytes(media, pic.url) == picture
    assert fake.files.served_bytes == len(data) + len(picture)


async def test_an_oversized_inbound_file_is_refused_while_reading(
    telegram: Any, shares: ShareLinkService
) -> None:
    """The core's [media] limit (100 kB) is below the file's 1 MB: storing stops at the limit, so the
    fake hands out at most one request (128 KiB) past it, and the message still arrives, described."""
    fake, bob, alice = telegram.fake, telegram.bob, telegram.alice
    media = Media(MediaRules(max_bytes=100_000), shares=lambda: shares)
    data = os.urandom(1_000_000)
    async with Live(connector(await linked(telegram), media)) as live:
        fake.world.send(bob, alice, "big", media=fake.files.add(data, name="big.bin", mime_type="x/y"))
        [got] = (await live.wait_text("big")).attachments
    assert got.url is None and got.remote_id is not None and got.size == len(data)
    assert 100_000 < fake.files.served_bytes <= 100_000 + transfer.DOWNLOAD_REQUEST
    assert fake.files.served_bytes < len(data)


async def test_an_inbound_file_announced_too_large_is_not_downloaded(
    telegram: Any, shares: ShareLinkService
) -> None:
    fake, bob, alice = telegram.fake, telegram.bob, telegram.alice
    media = Media(MediaRules(), shares=lambda: shares)
    async with Live(connector(await linked(telegram), media, max_file_bytes=10_000)) as live:
        fake.world.send(
            bob, alice, "huge", media=fake.files.add(b"x" * 20_000, name="h.bin", mime_type="x/y")
        )
        fake.world.send(bob, alice, "after")
        [got] = (await live.wait_text("huge")).attachments
        await live.wait_text("after")
    assert got.url is None and fake.files.served_bytes == 0
    assert not any(r.name == "GetFileRequest" for r in fake.requests)


async def test_sticker_voice_and_video_arrive_as_files(telegram: Any, shares: ShareLinkService) -> None:
    fake, bob, alice = telegram.fake, telegram.bob, telegram.alice
    media = Media(MediaRules(), shares=lambda: shares)
    kinds = {
        "sticker": (
            "image/webp",
            types.DocumentAttributeSticker("x", types.InputStickerSetEmpty()),
            "sticker.webp",
        ),
        "voice": ("audio/ogg", types.DocumentAttributeAudio(3, voice=True), "voice.ogg"),
        "video": ("video/mp4", types.DocumentAttributeVideo(1.0, 64, 64), "video.mp4"),
    }
    async with Live(connector(await linked(telegram), media)) as live:
        for text, (mime, attribute, _) in kinds.items():
            data = f"{text} bytes".encode()
            fake.world.send(
                bob, alice, text, media=fake.files.add(data, name="", mime_type=mime, attributes=[attribute])
            )
        got = {text: (await live.wait_text(text)).attachments[0] for text in kinds}
    for text, (mime, _, name) in kinds.items():
        assert got[text].name == name and got[text].mime_type == mime and got[text].url is not None
        assert await stored_bytes(media, got[text].url) == f"{text} bytes".encode()


async def test_a_file_sent_while_the_bridge_was_down_is_stored_by_the_catch_up(
    telegram: Any, shares: ShareLinkService
) -> None:
    fake, bob, alice = telegram.fake, telegram.bob, telegram.alice
    media = Media(MediaRules(), shares=lambda: shares)
    bridge = connector(await linked(telegram), media)
    async with Live(bridge) as live:
        fake.world.send(bob, alice, "seen live")
        await live.wait_text("seen live")  # its ack commits the update state: what follows is a gap
    data = os.urandom(200_000)
    fake.world.send(bob, alice, "while down", media=fake.files.add(data, name="d.bin", mime_type="x/y"))
    async with Live(bridge) as live:
        assert live.snapshot is not None
        [message] = [
            e for e in live.events(live.snapshot.history) if getattr(e, "text", None) == "while down"
        ]
    [got] = message.attachments  # type: ignore[attr-defined]
    assert got.url is not None and got.size == len(data)
    assert await stored_bytes(media, got.url) == data


async def test_files_of_the_history_import_are_stored_once(telegram: Any, shares: ShareLinkService) -> None:
    """A file from before the link comes with the history import; one written after the link comes both in
    the import and in the first catch-up (from the link state), and is downloaded once."""
    fake, bob, alice = telegram.fake, telegram.bob, telegram.alice
    media = Media(MediaRules(), shares=lambda: shares)
    old, new = os.urandom(150_000), os.urandom(60_000)
    fake.world.send(bob, alice, "old file", media=fake.files.add(old, name="old.bin", mime_type="x/y"))
    account = await linked(telegram)
    fake.world.send(bob, alice, "new file", media=fake.files.add(new, name="new.bin", mime_type="x/y"))
    async with Live(connector(account, media, history_import=10)) as live:
        assert live.snapshot is not None
        found = {e.text: e for e in live.events(live.snapshot.history) if isinstance(e, Message)}
    for text, data in (("old file", old), ("new file", new)):
        [got] = found[text].attachments
        assert got.url is not None and got.size == len(data)
        assert await stored_bytes(media, got.url) == data
    assert fake.files.served_bytes == len(old) + len(new)
