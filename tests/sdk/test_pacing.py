"""SendPacer: a message longer than the burst always goes out, paced; a call never waits past max_wait, and
the retry it asks for resumes where it stopped."""

from __future__ import annotations

import asyncio

import pytest

from msgr_bridge.errors import RateLimited
from msgr_bridge.sdk.pacing import SendPacer, TokenBucket


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, 3, clock=lambda: now[0])
    assert [bucket.reserve(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay_for(1) == pytest.approx(0.5)
    assert bucket.reserve(2) == pytest.approx(1.0)
    now[0] += 1.0
    assert bucket.delay_for(1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


async def test_more_parts_than_the_burst_are_paced_not_refused() -> None:
    """Issue #10 item 3: 24 lines at 2/s with a burst of 3 raised RateLimited on every try, forever."""
    pacer = SendPacer(200.0, 3, max_wait=10.0)  # fast rate: the test takes ~0.1 s
    sent: list[int] = []

    async def send(index: int, part: str) -> str:
        sent.append(index)
        return f"id-{part}"

    assert await pacer.send_parts("txn", [str(i) for i in range(24)], send) == [f"id-{i}" for i in range(24)]
    assert sent == list(range(24))


async def test_a_call_stops_at_max_wait_and_the_retry_resumes() -> None:
    pacer = SendPacer(20.0, 1, max_wait=0.2)  # about 5 parts per call
    wire: list[str] = []

    async def send(index: int, part: str) -> int:
        wire.append(part)
        return index

    parts = [f"line {i}" for i in range(12)]
    calls = 0
    while True:
        calls += 1
        try:
            ids = await pacer.send_parts("txn-1", parts, send)
            break
        except RateLimited as exc:
            assert 0 < exc.retry_after <= 0.06
            assert "parts sent" in str(exc)
            await asyncio.sleep(exc.retry_after)
    assert wire == parts and ids == list(range(12))  # every line once, in order
    assert 2 <= calls <= 6
    assert pacer.unfinished == 0


async def test_other_parts_under_the_same_key_start_over() -> None:
    pacer = SendPacer(1000.0, 1, max_wait=0.0)
    wire: list[str] = []

    async def send(index: int, part: str) -> None:
        wire.append(part)

    with pytest.raises(RateLimited):
        await pacer.send_parts("k", ["a", "b"], send)
    await asyncio.sleep(0.01)
    with pytest.raises(RateLimited):
        await pacer.send_parts("k", ["x", "y"], send)
    assert wire == ["a", "x"]
