"""Files both ways through the core's media helper (``ctx.media``) and the fake Slack: outbound streamed
from share-link storage into Slack's external upload, inbound streamed from ``url_private`` into storage;
local files and foreign URLs are never read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from msgr_bridge_slack.media import InboundFiles
from slack_world import Slack, eventually

from msgr_bridge.errors import AttachmentRefused, BridgeError, PermanentError, TransientError
from msgr_bridge.schema import Attachment, Message, OutboundMessage
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.media import chunks_of, temporary_media


async def test_files_both_ways(slack: Slack, media: Media) -> None:
    data = bytes(range(256)) * 1000
    stored = await media.receive(
        chunks_of(data, 50_000), name="report.bin", mime_type="application/octet-stream"
    )
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

        # inbound: Bob shares a file; the connector streams it into storage before the message is pushed
        png = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100
        await slack.bob_web.files_upload_v2(
            channel=slack.general.id, content=png, filename="pic.png", title="pic"
        )
        msg = await live.wait_event(lambda e: isinstance(e, Message) and e.sender.user_id == slack.bob.id)
        assert isinstance(msg, Message)
        (inbound,) = msg.attachments
        assert inbound.url and inbound.url.startswith("https://b.example/s/") and inbound.size == len(png)
        assert await read_back(media, inbound) == png


async def read_back(media: Media, attachment: Attachment) -> bytes:
    async with media.open(attachment) as back:
        return b"".join([chunk async for chunk in back.chunks])


def stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


def with_media(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in payloads if p.get("media")]


async def test_inbound_file_is_stored_once_when_the_event_comes_again(
    slack: Slack, media: Media, tmp_path: Path
) -> None:
    async with Live(slack.connector(media=media)) as live:
        data = b"minutes of the meeting\n" * 500
        await slack.bob_web.files_upload_v2(channel=slack.general.id, content=data, filename="notes.txt")
        first = await live.wait_event(lambda e: isinstance(e, Message) and e.sender.user_id == slack.bob.id)
        assert isinstance(first, Message) and await read_back(media, first.attachments[0]) == data
        assert len(stored_files(tmp_path)) == 1
        # Slack delivers the same event again (a retry after a missed ack, or catch-up overlapping live)
        pushed = [f.get("payload", {}).get("event", {}) for f in slack.fake.pushed]
        (event,) = [e for e in pushed if e.get("files")]
        for session in slack.fake.sessions:
            await session.queue.put(dict(event))
        both = await eventually(lambda: len(with_media(live.sink.payloads)) == 2)
        assert both
        one, two = with_media(live.sink.payloads)
        assert one["media"] == two["media"]
        (again,) = live.connector.convert(two, live.connector.ctx.account)
        assert isinstance(again, Message) and again.attachments[0].url == first.attachments[0].url
        assert len(stored_files(tmp_path)) == 1


async def test_oversized_inbound_file_is_kept_as_slacks_reference(slack: Slack, tmp_path: Path) -> None:
    small_media = temporary_media(tmp_path, MediaRules(max_bytes=1000), database="small.db")
    async with small_media as small, Live(slack.connector(media=small)) as live:
        await slack.bob_web.files_upload_v2(channel=slack.general.id, content=b"x" * 5000, filename="big.bin")
        msg = await live.wait_event(lambda e: isinstance(e, Message) and e.sender.user_id == slack.bob.id)
        assert isinstance(msg, Message)
        (kept,) = msg.attachments
        assert kept.url and kept.url.startswith(slack.fake.url) and kept.size == 5000
        (payload,) = with_media(live.sink.payloads)
        (note,) = payload["media"].values()
        assert "too large" in note["note"] and "1000 bytes" in note["note"]
        assert stored_files(tmp_path) == []


class EndlessWeb:
    """A Slack file that never ends (or a download that fails), to show where reading stops."""

    def __init__(self, fail: BridgeError | None = None) -> None:
        self.read, self.fail = 0, fail

    async def download(self, url: str) -> AsyncIterator[bytes]:
        if self.fail is not None:
            raise self.fail
        while True:
            self.read += 1
            yield b"x" * 1000


def inbound(web: EndlessWeb, media: Media, state: Any = None) -> InboundFiles:
    state = state or MemoryStateStore().map("f", max_entries=10)
    return InboundFiles(lambda: web, media, state, structlog.get_logger())  # type: ignore[arg-type,return-value]


EVENT = {"type": "message", "files": [{"id": "F1", "name": "a.bin", "url_private_download": "x"}]}


async def test_inbound_file_over_the_cap_is_refused_while_reading(media: Media) -> None:
    web = EndlessWeb()
    small = Media(MediaRules(max_bytes=10_000), shares=media._shares)
    result = await inbound(web, small).store(EVENT)
    assert "too large" in result["F1"]["note"] and 10 <= web.read <= 12  # never read whole


async def test_transient_download_failure_keeps_the_message_and_retries_on_redelivery(media: Media) -> None:
    web = EndlessWeb(fail=TransientError("Slack answered 503"))
    state = MemoryStateStore().map("f", max_entries=10)
    first = await inbound(web, media, state).store(EVENT)
    assert "503" in first["F1"]["note"] and "url" not in first["F1"]
    assert await state.get("F1") is None  # not remembered: the next delivery tries again
    web.fail = PermanentError("gone")
    assert "gone" in (await inbound(web, media, state).store(EVENT))["F1"]["note"]


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


async def test_a_file_missed_while_away_is_stored_by_catch_up(
    slack: Slack, media: Media, tmp_path: Path
) -> None:
    connector = slack.connector(media=media)
    await connector.connect()
    try:
        snapshot = await connector.sync_state(None)
        data = b"sent while the bridge was down\n" * 300
        await slack.bob_web.files_upload_v2(channel=slack.general.id, content=data, filename="away.txt")
        connector.backlog = None  # a new connection's first sync
        caught_up = await connector.sync_state(snapshot.cursor)
    finally:
        await connector.disconnect()
    events = [e for p in caught_up.history for e in connector.convert(p, connector.ctx.account)]
    [message] = [e for e in events if isinstance(e, Message) and e.attachments]
    assert message.attachments[0].url and message.attachments[0].url.startswith("https://b.example/s/")
    assert await read_back(media, message.attachments[0]) == data
    assert len(stored_files(tmp_path)) == 1
