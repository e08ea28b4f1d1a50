"""Group commit: concurrent submissions share transactions, and each keeps its own outcome."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from msgr_bridge.outbound.batcher import SubmitBatcher


async def test_concurrent_submissions_share_a_commit_and_keep_their_outcomes() -> None:
    commits: list[list[int]] = []

    async def commit(batch: Sequence[int]) -> list[str | Exception]:
        commits.append(list(batch))
        await anyio.sleep(0.01)
        return [ValueError(f"odd {n}") if n % 2 else f"ok {n}" for n in batch]

    batcher: SubmitBatcher[int, str] = SubmitBatcher(commit, max_batch=8)
    results: dict[int, str] = {}

    async def one(n: int) -> None:
        try:
            results[n] = await batcher.submit(n)
        except ValueError as exc:
            results[n] = f"refused: {exc}"

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(one, n)
    assert results == {n: (f"refused: odd {n}" if n % 2 else f"ok {n}") for n in range(20)}
    assert sorted(n for c in commits for n in c) == list(range(20))
    assert len(commits) < 20 and max(len(c) for c in commits) <= 8


async def test_a_failed_commit_fails_its_batch_only() -> None:
    calls = 0

    async def commit(batch: Sequence[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return list(batch)

    batcher: SubmitBatcher[int, int] = SubmitBatcher(commit)
    with pytest.raises(ConnectionError):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_a_cancelled_leader_does_not_lose_the_followers_results() -> None:
    release = anyio.Event()

    async def commit(batch: Sequence[int]) -> list[int | Exception]:
        await release.wait()
        return [n * 10 for n in batch]

    batcher: SubmitBatcher[int, int] = SubmitBatcher(commit)
    got: list[int] = []
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            got.append(await batcher.submit(1))

    async def follower() -> None:
        got.append(await batcher.submit(2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()  # the leader is now waiting inside its commit
        tg.start_soon(follower)
        await anyio.lowlevel.checkpoint()
        leader_scope.cancel()  # the client of the leader hangs up
        release.set()
    assert got == [20]  # the leader's own result is gone with it; the follower's is not
    assert batcher.batches == 2
