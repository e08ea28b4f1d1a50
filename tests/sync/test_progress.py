"""Import progress in the core: the rate limit (one update per conversation a second, the final one
always, the newest held-back one later), the bounds, publishing on the ephemeral topic, storing across a
restart."""

from __future__ import annotations

import anyio
import pytest

from msgr_bridge.bus import MemoryBus
from msgr_bridge.schema import Account, SyncPhase, SyncProgress
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.sync.progress import ProgressBoard, ProgressService, summary_line

ACCOUNT = Account(id="acct-p", network="loop", remote_user_id="me")


def progress(conv: str, done: int, *, finished: bool = False, account: str = "acct-p") -> SyncProgress:
    return SyncProgress(
        network="loop", account_id=account, conversation_id=conv, done=done, total=100, finished=finished
    )


def test_one_update_per_conversation_a_second_and_the_newest_held_back_one_goes_out_later() -> None:
    board = ProgressBoard(interval_s=1.0)
    board.report(progress("c1", 10))
    assert [p.done for p in board.due(now=100.0)] == [10]  # the first goes out at once
    board.report(progress("c1", 20))
    board.report(progress("c1", 30))
    assert board.due(now=100.5) == []  # within the second: held back
    assert board.next_due(now=100.5) == pytest.approx(0.5)
    board.report(progress("c2", 1))  # another conversation has its own second
    assert [p.conversation_id for p in board.due(now=100.6)] == ["c2"]
    assert [p.done for p in board.due(now=101.0)] == [30]  # only the newest, once
    assert board.due(now=105.0) == [] and board.next_due(now=105.0) is None


def test_the_final_update_always_goes_out_at_once() -> None:
    board = ProgressBoard(interval_s=1.0)
    board.report(progress("c1", 10))
    board.due(now=100.0)
    board.report(progress("c1", 90))
    board.report(progress("c1", 100, finished=True))
    [final] = board.due(now=100.1)
    assert final.finished and final.done == 100
    assert board.snapshot("acct-p") == [final]


def test_the_board_is_bounded_per_account_and_in_accounts() -> None:
    board = ProgressBoard(max_conversations=3, max_accounts=2)
    for i in range(5):
        board.report(progress(f"c{i}", i))
    assert [p.conversation_id for p in board.snapshot("acct-p")] == ["c2", "c3", "c4"]
    assert board.dropped == 2
    board.report(progress("x", 1, account="acct-q"))
    board.report(progress("x", 1, account="acct-r"))  # a third account: the least recent one goes
    assert board.snapshot("acct-p") == [] and len(board.accounts) == 2


def test_summary_line_for_the_cli() -> None:
    convs = [
        {"conversation_id": "a", "phase": "history", "done": 50, "total": 50, "finished": True, "at": "1"},
        {"conversation_id": "b", "phase": "history", "done": 10, "total": 40, "finished": False, "at": "2"},
    ]
    assert summary_line({"conversations": convs}) == "history 1/2 conversations, 60/90 messages"
    convs[1] |= {"done": 40, "finished": True, "total": None}
    assert summary_line({"conversations": convs}) == "done 2/2 conversations, 90 messages"
    assert summary_line({"conversations": []}) == ""


async def test_reports_are_published_on_the_ephemeral_topic_and_stored_across_a_restart(db: Database) -> None:
    await AccountRepo(db).create(ACCOUNT)
    bus = MemoryBus()
    now = [100.0]
    service = ProgressService(bus, "default", db, monotonic=lambda: now[0])
    reporter = service.reporter(ACCOUNT)
    async with bus.subscribe("default.loop.ephemeral", maxsize=100) as sub:
        reporter.report("c1", done=10, total=30, phase="catchup")
        await service.flush()
        reporter.report("c1", done=20, total=30, phase="catchup")  # within the second: held
        await service.flush()
        reporter.report("c1", done=30, total=30, phase="catchup", finished=True)
        await service.flush()
        got = [env.message for env in await sub.receive_batch(10)]
    assert [(p.done, p.finished, p.phase) for p in got] == [
        (10, False, SyncPhase.CATCHUP),
        (30, True, SyncPhase.CATCHUP),
    ]
    assert service.snapshot(ACCOUNT.id)["in_progress"] == 0

    restarted = ProgressService(MemoryBus(), "default", db)
    await restarted.load(ACCOUNT)
    [stored] = restarted.snapshot(ACCOUNT.id)["conversations"]
    assert stored | {"at": None} == {
        "conversation_id": "c1",
        "phase": "catchup",
        "done": 30,
        "total": 30,
        "finished": True,
        "at": None,
    }


async def test_report_never_waits_and_the_service_task_sends_what_is_due(db: Database) -> None:
    """``report`` is synchronous; the running task publishes the first at once and the held-back newest
    one when its second is up, without another report to wake it."""
    await AccountRepo(db).create(ACCOUNT)
    bus = MemoryBus()
    service = ProgressService(bus, "default", db)
    async with bus.subscribe("default.*.ephemeral", maxsize=100) as sub, anyio.create_task_group() as tg:
        await tg.start(service.run)
        service.reporter(ACCOUNT).report("c1", done=1)
        seen: list[int] = []
        with anyio.fail_after(10):
            seen += [env.message.done for env in await sub.receive_batch(10)]
        service.reporter(ACCOUNT).report("c1", done=2)  # within the second: held back, then sent
        with anyio.fail_after(10):
            while 2 not in seen:
                seen += [env.message.done for env in await sub.receive_batch(10)]
        assert seen == [1, 2]
        tg.cancel_scope.cancel()


async def test_a_failing_store_does_not_stop_publishing_and_is_retried() -> None:
    class Broken:
        def session(self) -> object:
            raise RuntimeError("database is out")

    bus = MemoryBus()
    service = ProgressService(bus, "default", None)
    service.db = Broken()  # type: ignore[assignment]
    service._repo = object()  # type: ignore[assignment]
    async with bus.subscribe("default.loop.ephemeral", maxsize=100) as sub:
        service.reporter(ACCOUNT).report("c1", done=5, finished=True)
        await service.flush()
        [env] = await sub.receive_batch(10)
    assert env.message.done == 5
    assert list(service._unwritten) == [("acct-p", "c1")]  # kept for the next round


def test_bad_reports_are_refused_with_a_clear_error() -> None:
    reporter = ProgressService(MemoryBus(), "default", None).reporter(ACCOUNT)
    with pytest.raises(ValueError, match="done must be a count"):
        reporter.report("c1", done=-1)
    with pytest.raises(ValueError, match="phase must be one of history, catchup"):
        reporter.report("c1", done=1, phase="backfill")
    with pytest.raises(ValueError, match="conversation_id"):
        reporter.report("", done=1)
    with pytest.raises(ValueError, match="conversation_id"):  # it is a key in the store
        reporter.report("x" * 513, done=1)
