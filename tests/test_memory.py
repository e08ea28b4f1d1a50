"""Giving memory back once a burst is over (issue 19): ``QuietTrim`` trims after a quiet window that
follows growth, never while the database is busy, and has no timer while nothing happens."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from msgr_bridge import memory
from msgr_bridge.memory import QuietTrim
from msgr_bridge.store.db import Database
from msgr_bridge.testing.waiting import wait_until


async def _transactions(db: Database, n: int) -> None:
    for _ in range(n):
        async with db.session() as s:
            await s.execute(text("SELECT 1"))


async def test_a_quiet_window_after_growth_trims_once_and_then_it_waits(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    rss = [100 << 20]
    monkeypatch.setattr(memory, "resident_bytes", lambda: rss[0])
    trim = QuietTrim(db, window_s=0.05, growth_bytes=8 << 20)
    trim.attach()
    async with anyio.create_task_group() as tg:
        await tg.start(trim.run)
        await _transactions(db, 3)
        await anyio.sleep(0.2)  # quiet windows, but nothing grew
        assert trim.trims == 0
        rss[0] += 10 << 20  # a burst's leftovers
        await _transactions(db, 3)
        await wait_until(lambda: trim.trims == 1)
        await wait_until(lambda: trim._busy is not None)  # nothing since: waits for a transaction, no timer
        await anyio.sleep(0.2)
        assert trim.trims == 1
        tg.cancel_scope.cancel()


async def test_no_trim_while_the_database_is_busy(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "QUIET_MAX", -1)  # every window counts as busy
    trim = QuietTrim(db, window_s=0.05, growth_bytes=0)
    trim.attach()
    async with anyio.create_task_group() as tg:
        await tg.start(trim.run)
        for _ in range(5):
            await _transactions(db, 2)
            await anyio.sleep(0.05)
        assert trim.trims == 0 and trim.transactions >= 10
        tg.cancel_scope.cancel()


async def test_a_trim_shrinks_every_open_sqlite_connection(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's page caches")
    from msgr_bridge.store.sqlite_driver import release_memory

    await _transactions(db, 2)
    assert await release_memory() >= 1
    await QuietTrim(db).trim()  # and the whole trim runs (glibc's malloc_trim where there is one)
    await _transactions(db, 1)  # the connections still work


def test_freezing_the_start_up_heap_leaves_later_objects_to_the_collector() -> None:
    import subprocess
    import sys

    script = (
        "import gc, msgr_bridge.app\n"
        "from msgr_bridge.memory import freeze_start_up\n"
        "freeze_start_up()\n"
        "frozen = gc.get_freeze_count()\n"
        "class Cycle: pass\n"
        "a = Cycle(); a.me = a; del a\n"
        "print(frozen > 10000, gc.collect() >= 1)\n"
    )
    run = [sys.executable, "-c", script]
    out = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split()[-2:] == ["True", "True"]


async def test_transactions_on_the_writer_thread_count_too(db: Database) -> None:
    """Inbound messages on SQLite are written on the writer's thread, past SQLAlchemy's ``begin`` event:
    a burst of them must still count as a busy database (fails when only that event is listened to)."""
    if not db.writes_on_thread:
        pytest.skip("SQLite's writer thread")
    trim = QuietTrim(db)
    trim.attach()
    for _ in range(3):
        await db.on_writer_thread(lambda conn: conn.execute("SELECT 1").fetchall())
    assert trim.transactions == 3


IDLE_ABSENT = ("sqlalchemy.dialects.postgresql",)
"""Modules a started bridge on SQLite with every plugin and no account must not have loaded (issue 19: idle
memory). SQLAlchemy's PostgreSQL dialect: ~2 MB, needed only with a PostgreSQL database (its statements
are built on first use: the PostgreSQL runs of tests/store exercise them)."""

_IDLE_SCRIPT = """
import asyncio, json, sys
import aiohttp
from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings

async def go():
    async with Bridge(load_settings()).running() as bridge:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{bridge.api.bound_port}/health") as resp:
                status = resp.status
    print(json.dumps({"status": status, "modules": sorted(sys.modules)}))

asyncio.run(go())
"""


def test_an_idle_bridge_on_sqlite_does_not_load_what_only_other_setups_need(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
        "MSGR_BRIDGE__API__PORT": "0",
        "MSGR_BRIDGE__PLUGINS__ALLOW": '["*"]',
    }
    migrate = [sys.executable, "-m", "msgr_bridge.cli", "migrate"]  # in a process of its own, as in use
    subprocess.run(migrate, env=env, cwd=tmp_path, capture_output=True, check=True, timeout=120)
    run = [sys.executable, "-c", _IDLE_SCRIPT]
    proc = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    loaded = [m for m in out["modules"] if m.startswith(IDLE_ABSENT)]
    assert out["status"] == 200 and loaded == [], loaded
