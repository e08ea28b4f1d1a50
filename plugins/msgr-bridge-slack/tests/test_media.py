"""Files both ways through the core's media helper (``ctx.media``) and the fake Slack: outbound streamed
from share-link storage into Slack's external upload, inbound streamed from ``url_private`` into storage;
local files and foreign URLs are never read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_world import Slack

from msgr_bridge.errors import AttachmentRefused, PermanentError
from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.media.storage import LocalStorage
from msgr_bridge.schema import Attachment, Message, OutboundMessage
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.store.db import Database
from msgr_bridge.testing.harness import Live


@pytest.fixture
async def media(tmp_path: Path) -> AsyncIterator[Media]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/media.db")
    await db.connect()
    await db.migrate()
    shares = ShareLinkService(
        db, LocalStorage(tmp_path / "media"), b"k" * 32, tenant="default", public_base_url="https://b.example"
    )
    yield Media(MediaRules(), shares=lambda: shares)
    await db.close()


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 50_000):
        yield data[start : start + 50_000]


async def test_files_both_ways(slack: Slack, media: Media) -> None:
    data = bytes(range(256)) * 1000
    stored = await media.receive(chunks_of(data), name="report.bin", mime_type="application/octet-stream")
    async with Live(slack.connector(media=media)) as live:
        c = live.connector
        assert c.capabilities.attachments and c.capabilities.attachments[0].max_size == 1 << 30
        att = Attachment(name="report.bin", mime_type="application/octet-stream", url=stored.url)
        result = await c.send_message(
            slack.general.id, OutboundMessage(txn_id="t1", text="the report", attachments=(att, att))
        )
        first = slack.general.messages[result.remote_id]
        assert first.text == "the report" and len(result.extra_parts) == 1
        (file_id,) = first.files
        assert slack.fake.workspace.files[file_id].content == data
        echo = await live.wait_event(lambda e: isinstance(e, Message) and e.remote_id == result.remote_id)
        assert isinstance(echo, Message) and echo.sender.is_self and echo.attachments[0].size == len(data)

        # inbound: Bob shares a file; the connector streams it into storage
        png = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100
        await slack.bob_web.files_upload_v2(
            channel=slack.general.id, content=png, filename="pic.png", title="pic"
        )
        msg = await live.wait_event(lambda e: isinstance(e, Message) and e.sender.user_id == slack.bob.id)
        assert isinstance(msg, Message)
        (inbound,) = msg.attachments
        kept = await c.store_media(inbound)  # type: ignore[attr-defined]
        assert kept.size == len(png)
        async with media.open(Attachment(name="pic.png", url=kept.url)) as back:
            assert b"".join([chunk async for chunk in back.chunks]) == png


async def test_local_files_and_foreign_urls_are_never_read(
    slack: Slack, media: Media, tmp_path: Path
) -> None:
    secret = tmp_path / "keystore.key"
    secret.write_bytes(b"the keystore key")
    async with Live(slack.connector(media=media)) as live:
        c = live.connector
        for url in (secret.as_uri(), str(secret)):
            att = Attachment(name="k", url=url)
            with pytest.raises(AttachmentRefused):
                await c.send_message(slack.general.id, OutboundMessage(txn_id=url, attachments=(att,)))
        assert slack.fake.workspace.files == {} and slack.general.messages == {}
        for url in ("http://169.254.169.254/latest/meta-data", secret.as_uri(), "https://evil.example/x"):
            with pytest.raises(PermanentError, match="not a Slack file URL"):
                await c.store_media(Attachment(name="x", url=url))  # type: ignore[attr-defined]
