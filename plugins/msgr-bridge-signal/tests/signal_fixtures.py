"""Shared pieces of the Signal tests: the numbers, a connector factory, and sample payloads."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from msgr_bridge_signal import SignalConnector

from msgr_bridge.connectors.protocol import MediaStream, StoredMedia
from msgr_bridge.schema import Attachment
from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.fakes.signal import SignalFake

ME = "+15550100001"
BOB = "+15550100002"


def connector_for(fake: SignalFake, number: str = ME, **settings: Any) -> SignalConnector:
    base: dict[str, Any] = {"base_url": fake.base_url, "number": number, **settings}
    ctx = make_context("signal", remote_user_id=number, settings=base, sink=CollectingSink())
    return SignalConnector(ctx)


def sample_payloads() -> list[dict[str, Any]]:
    """What signal-cli-rest-api delivers, as the connector pushes it (one of each kind)."""
    bob = {
        "source": BOB,
        "sourceNumber": BOB,
        "sourceUuid": "0b0b0b0b-0000-4000-8000-000000000002",
        "sourceName": "Bob",
        "sourceDevice": 1,
        "serverReceivedTimestamp": 1,
        "serverDeliveredTimestamp": 2,
    }
    me = {**bob, "source": ME, "sourceNumber": ME, "sourceName": "Me"}
    group = {"groupId": "internal-1", "groupName": "Friends", "revision": 1, "type": "DELIVER"}
    t0 = 1700000000000
    quote = {"id": t0 + 1, "author": ME, "authorNumber": ME, "text": "hi"}
    attachment = {"id": "att1.png", "contentType": "image/png", "filename": "a.png", "size": 3}
    edit = {"targetSentTimestamp": t0 + 1, "dataMessage": {"timestamp": t0 + 5, "message": "hello (edited)"}}
    reaction = {"emoji": "👍", "isRemove": False, "targetAuthorNumber": ME, "targetSentTimestamp": t0 + 9}
    receipt = {"when": t0 + 8, "isDelivery": False, "isRead": True, "isViewed": False, "timestamps": [t0 + 9]}
    sent = {"timestamp": t0 + 9, "message": "mine", "destination": BOB, "destinationNumber": BOB}

    def env(who: dict[str, Any], ts: int, **payload: Any) -> dict[str, Any]:
        return {"v": 1, "account": ME, "envelope": {**who, "timestamp": ts, **payload}}

    def data(ts: int, **fields: Any) -> dict[str, Any]:
        return env(bob, ts, dataMessage={"timestamp": ts, **fields})

    return [
        data(t0 + 1, message="hello"),
        data(t0 + 2, message="in a group", groupInfo=group),
        data(t0 + 3, message="a reply", quote=quote),
        data(t0 + 4, attachments=[attachment]),
        env(bob, t0 + 5, editMessage=edit),
        data(t0 + 6, remoteDelete={"timestamp": t0 + 1}),
        data(t0 + 7, reaction=reaction),
        env(bob, t0 + 8, receiptMessage=receipt),
        env(bob, t0 + 10, typingMessage={"action": "STARTED", "timestamp": t0 + 10}),
        {**env(me, t0 + 9, syncMessage={"sentMessage": sent}), "txn_id": "txn-1"},
    ]


class MemoryMedia:
    """``ctx.media`` for connector tests: outbound files served from memory by URL, inbound files kept."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})
        self.received: dict[str, tuple[str, str, bytes]] = {}

    @asynccontextmanager
    async def open(
        self, attachment: Attachment, *, max_bytes: int | None = None
    ) -> AsyncIterator[MediaStream]:
        data = self.files[attachment.url or ""]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 1000):  # odd chunk sizes: base64 must be cut on 3-byte bounds
                yield data[start : start + 1000]

        yield MediaStream(attachment.name, attachment.mime_type, len(data), chunks())

    async def receive(
        self, chunks: AsyncIterable[bytes], *, name: str, mime_type: str, max_bytes: int | None = None
    ) -> StoredMedia:
        data = b"".join([c async for c in chunks])
        url = f"https://bridge.test/s/{len(self.received)}/content"
        self.received[url] = (name, mime_type, data)
        return StoredMedia(url=url, size=len(data))


def media_connector(fake: SignalFake, media: MemoryMedia, **settings: Any) -> SignalConnector:
    base: dict[str, Any] = {"base_url": fake.base_url, "number": ME, **settings}
    ctx = make_context("signal", remote_user_id=ME, settings=base, sink=CollectingSink(), media=media)
    return SignalConnector(ctx)
