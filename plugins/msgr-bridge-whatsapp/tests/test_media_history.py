"""Files both ways through ``ctx.media`` (never a local file or a URL fetched by the connector), and the
history sync WhatsApp sends after pairing: imported message by message, progress logged."""

from __future__ import annotations

import pytest
from msgr_bridge_whatsapp.testing import FakeWhatsmeow, message_event
from neonize.proto import Neonize_pb2 as N
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import DocumentMessage, ImageMessage
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
from neonize.proto.waHistorySync.WAWebProtobufsHistorySync_pb2 import (
    Conversation,
    HistorySync,
    HistorySyncMsg,
)
from neonize.proto.waWeb.WAWebProtobufsWeb_pb2 import WebMessageInfo
from structlog.testing import capture_logs

from conftest import BOB, GROUP, build
from msgr_bridge.errors import AttachmentRefused
from msgr_bridge.schema import Attachment, Message, OutboundMessage
from msgr_bridge.sdk.media import Media
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.media import chunks_of
from msgr_bridge.testing.waiting import wait_until


async def test_a_file_goes_out_streamed_from_storage_and_one_comes_in_into_storage(
    fake: FakeWhatsmeow, media: Media
) -> None:
    data = bytes(range(256)) * 40
    stored = await media.receive(chunks_of(data, 1000), name="cat.png", mime_type="image/png")
    async with Live(build(media=media)) as live:
        photo = Attachment(name="cat.png", mime_type="image/png", url=stored.url)
        result = await live.connector.send_message(
            BOB, OutboundMessage(txn_id="t", text="a cat", attachments=(photo,))
        )
        assert fake.uploads == [data]
        image = fake.sent_to(BOB)[0].message.imageMessage
        assert image.caption == "a cat" and image.mimetype == "image/png" and image.fileLength == len(data)
        assert image.directPath == "/v/t62/1" and result.remote_id == fake.sent[0].id
        fake.files["/v/t62/in"] = b"%PDF-1.7 report"
        doc = DocumentMessage(
            fileName="r.pdf", mimetype="application/pdf", directPath="/v/t62/in", fileLength=15
        )
        fake.emit(message_event(BOB, BOB, WAMessage(documentMessage=doc), id="DOC"))
        message = await live.wait_event(lambda e: isinstance(e, Message) and e.remote_id == "DOC")
    assert isinstance(message, Message)
    (attachment,) = message.attachments
    assert attachment.name == "r.pdf" and attachment.size == 15 and attachment.url
    assert attachment.url.startswith("https://b.example/")


async def test_local_files_and_foreign_urls_are_never_read(fake: FakeWhatsmeow, media: Media) -> None:
    async with Live(build(media=media)) as live:
        for url in ("/etc/passwd", "file:///etc/passwd", "https://example.com/x.png"):
            bad = Attachment(name="x.png", mime_type="image/png", url=url)
            with pytest.raises(AttachmentRefused):
                await live.connector.send_message(BOB, OutboundMessage(txn_id="t", attachments=(bad,)))
    assert fake.uploads == [] and fake.sent == []


async def test_an_inbound_file_without_media_storage_is_listed_without_a_url(fake: FakeWhatsmeow) -> None:
    fake.files["/v/t62/in"] = b"jpeg"
    image = ImageMessage(mimetype="image/jpeg", directPath="/v/t62/in", fileLength=4, caption="pic")
    async with Live(build()) as live:
        fake.emit(message_event(BOB, BOB, WAMessage(imageMessage=image), id="IMG"))
        message = await live.wait_text("pic")
    assert message.attachments[0].url is None


def history_chunk(
    order: int, texts: list[str], *, progress: int | None = None, ended: bool = False
) -> N.HistorySync:
    messages = [
        HistorySyncMsg(
            message=WebMessageInfo(
                key=MessageKey(remoteJID=GROUP, fromMe=False, ID=f"H-{text}"),
                participant=BOB,
                messageTimestamp=1_600_000_000 + i,
                message=WAMessage(conversation=text),
            )
        )
        for i, text in enumerate(texts)
    ]
    percent = 50 * order if progress is None else progress
    data = HistorySync(syncType=HistorySync.INITIAL_BOOTSTRAP, chunkOrder=order, progress=percent)
    data.conversations.append(Conversation(ID=GROUP, messages=messages, endOfHistoryTransfer=ended))
    return N.HistorySync(Data=data)


async def test_history_sync_is_imported_with_progress(fake: FakeWhatsmeow) -> None:
    connector = build()
    with capture_logs() as logs:
        async with Live(connector) as live:
            fake.emit(history_chunk(1, ["one", "two"]))
            fake.emit(history_chunk(2, ["three"]))
            await live.wait_text("three")
            texts = [e.text for e in live.events() if isinstance(e, Message)]
    assert texts == ["one", "two", "three"]
    progress = [
        (e["chunk"], e["progress_percent"], e["messages"])
        for e in logs
        if e["event"] == "whatsapp.history_sync"
    ]
    assert progress == [(1, 50, 2), (2, 100, 1)]
    reports = [(r.done, r.finished, r.phase.value) for r in connector.ctx.progress.of(GROUP)]
    assert reports == [(2, False, "history"), (3, True, "history")]  # on ctx.progress, not only logged


async def test_a_conversation_whose_transfer_ended_is_reported_finished(fake: FakeWhatsmeow) -> None:
    connector = build()
    async with Live(connector) as live:
        fake.emit(history_chunk(1, ["old"], progress=10, ended=True))
        await live.wait_text("old")
        await wait_until(lambda: connector.ctx.progress.finished() == {GROUP})
