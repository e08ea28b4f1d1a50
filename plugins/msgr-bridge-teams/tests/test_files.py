"""Sending files: uploaded to the sender's OneDrive (chats, then shared with the chat's members) or the
channel's folder, streamed from share-link storage, and referred to from the message as Graph asks."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_teams import TeamsConnector

from msgr_bridge.errors import AttachmentRefused
from msgr_bridge.schema import Attachment, Message, OutboundMessage
from msgr_bridge.sdk.media import Media
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.media import chunks_of


async def stored(media: Media, data: bytes, name: str) -> Attachment:
    kept = await media.receive(chunks_of(data, 50_000), name=name, mime_type="application/pdf")
    return Attachment(name=name, mime_type="application/pdf", url=kept.url)


def items(fake: Any) -> list[dict[str, Any]]:
    return [i for d in fake.drives.drives.values() for i in d["items"].values() if "file" in i]


async def test_a_file_sent_into_a_chat_is_uploaded_shared_and_referred_to(tenant: Any, media: Media) -> None:
    fake = tenant.fake
    data = bytes(range(256)) * 2000
    att = await stored(media, data, "report.pdf")
    c = TeamsConnector(await tenant.context(await tenant.link(), media=media))
    assert c.capabilities.attachments and c.capabilities.attachments[0].max_size == 250 * 1024 * 1024
    async with Live(c) as live:
        sent = await c.send_message(
            tenant.chat, OutboundMessage(txn_id="f1", text="the report", attachments=(att, att))
        )
        first, second = items(fake)
        assert first["content"] == data and first["name"] == "report.pdf" and second["name"] == "report 1.pdf"
        assert first["shared_with"] == [(tenant.bob, ("read",))]
        msg = fake.find(tenant.chat, sent.remote_id)
        assert msg is not None
        refs = [a for a in msg["attachments"] if a["contentType"] == "reference"]
        assert [r["contentUrl"] for r in refs] == [first["webUrl"], second["webUrl"]]
        guid = first["eTag"].split("{")[1].split("}")[0]
        assert refs[0]["id"] == guid and f'<attachment id="{guid}"></attachment>' in msg["body"]["content"]
        echo = await live.wait_event(lambda e: isinstance(e, Message) and e.remote_id == sent.remote_id)
        assert isinstance(echo, Message) and echo.txn_id == "f1" and len(echo.attachments) == 2
    folder = [
        i
        for d in fake.drives.drives.values()
        for i in d["items"].values()
        if "folder" in i and i["name"] != "root"
    ]
    assert [f["name"] for f in folder] == ["Microsoft Teams Chat Files"]


async def test_a_file_sent_into_a_channel_goes_to_its_folder(tenant: Any, media: Media) -> None:
    fake = tenant.fake
    team, (chan,) = fake.add_team("Engineering", [tenant.alice, tenant.bob], ["General"])
    att = await stored(media, b"%PDF-1.7 minutes", "minutes.pdf")
    c = TeamsConnector(await tenant.context(await tenant.link(channels=[f"{team}/{chan}"]), media=media))
    await c.connect()
    try:
        await c.send_message(f"{team}/{chan}", OutboundMessage(txn_id="f2", text="", attachments=(att,)))
    finally:
        await c.disconnect()
    (item,) = items(fake)
    drive = fake.drives.drives[item["parentReference"]["driveId"]]
    assert drive["owner"] == team and item["content"] == b"%PDF-1.7 minutes" and item["shared_with"] == []
    assert drive["items"][item["parentReference"]["id"]]["name"] == "General"


async def test_a_local_file_is_never_read(tenant: Any, media: Media) -> None:
    c = TeamsConnector(await tenant.context(await tenant.link(), media=media))
    await c.connect()
    try:
        with pytest.raises(AttachmentRefused):
            att = Attachment(name="passwd", url="file:///etc/passwd")
            await c.send_message(tenant.chat, OutboundMessage(txn_id="f3", text="x", attachments=(att,)))
    finally:
        await c.disconnect()
    assert items(tenant.fake) == []
