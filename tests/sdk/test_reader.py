"""InboundReader: order, a clean stop, TransientError on a lost connection, and reading paused at the mark
(over a real socket pair)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from msgr_bridge.errors import TransientError
from msgr_bridge.sdk.reader import InboundReader


async def test_items_in_order_then_transient_error_on_loss() -> None:
    reader: InboundReader[int] = InboundReader()
    for i in range(5):
        reader.feed(i)
    reader.lost("the link dropped")
    handled: list[int] = []

    async def handle(item: int) -> None:
        handled.append(item)

    with pytest.raises(TransientError, match="the link dropped"):
        await reader.run(handle)
    assert handled == [0, 1, 2, 3, 4]


async def test_stop_ends_run_cleanly_and_keeps_what_is_queued() -> None:
    reader: InboundReader[str] = InboundReader()
    run = asyncio.create_task(reader.run(lambda item: asyncio.sleep(0)))
    await asyncio.sleep(0)
    reader.stop()
    reader.lost("closed by us")
    reader.feed("kept")
    async with asyncio.timeout(2):
        await run  # returns, no TransientError
    reader.reopen()
    reader.forget_losses()
    assert await reader.next(timeout=1) == "kept"


async def test_reading_pauses_at_the_mark_and_resumes_below_it() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transports: list[asyncio.BaseTransport] = []
    reader: InboundReader[bytes] = InboundReader(
        high_water=4, low_water=1, transport=lambda: transports[0] if transports else None
    )

    class Feed(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            for line in data.split(b"\n"):
                if line:
                    reader.feed(line)

    transport, _ = await loop.connect_accepted_socket(Feed, ours)
    transports.append(transport)
    try:
        for i in range(4):
            theirs.send(b"%d\n" % i)
            await asyncio.sleep(0.05)
        assert reader.paused and reader.pauses == 1
        theirs.send(b"4\n")  # stays in the kernel's buffer while paused
        await asyncio.sleep(0.05)
        assert reader.queued == 4
        got = [await reader.next(timeout=1) for _ in range(5)]
        assert got == [b"0", b"1", b"2", b"3", b"4"] and not reader.paused
    finally:
        transport.close()
        theirs.close()
