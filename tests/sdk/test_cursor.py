"""``CommittedCursor``: a batch's cursor is stored once it and all earlier batches are committed."""

from __future__ import annotations

from msgr_bridge.sdk.cursor import CommittedCursor


async def test_a_cursor_waits_for_its_batch_and_every_earlier_one() -> None:
    saved: list[str] = []

    async def save(token: str) -> None:
        saved.append(token)

    cursor = CommittedCursor(save)
    first = [cursor.ack(), cursor.ack()]
    await cursor.close("t1")
    second = [cursor.ack()]
    await cursor.close("t2")
    assert saved == [] and cursor.owed == 3
    await second[0]()  # the later batch is committed first: nothing stored yet
    assert saved == []
    await first[0]()
    await first[1]()  # now both are: the newest cursor is stored, once
    assert saved == ["t2"] and cursor.saved == "t2" and cursor.owed == 0
    await cursor.close("t3")  # an empty batch is stored at once
    assert saved == ["t2", "t3"]


async def test_a_retired_cursor_stores_nothing_more() -> None:
    saved: list[str] = []

    async def save(token: str) -> None:
        saved.append(token)

    old = CommittedCursor(save)
    ack = old.ack()
    await old.close("old")
    old.retire()  # a new session started from the stored cursor
    await ack()
    assert saved == []
