"""The throwaway-server helpers start real PostgreSQL and Redis, and leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import asyncpg
import pytest

from msgr_bridge.testing import servers


def test_free_port_never_repeats_and_is_bindable() -> None:
    ports = {servers.free_port() for _ in range(20)}
    assert len(ports) == 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))


def test_probes_say_no_on_a_closed_port() -> None:
    port = servers.free_port()
    assert not servers.port_open("127.0.0.1", port)
    assert not servers.redis_ping("127.0.0.1", port)
    assert not servers.postgres_answers("127.0.0.1", port)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_throwaway_postgres_starts_answers_and_is_removed() -> None:
    with servers.start_postgres() as url:
        host, port = servers.split_host_port(url, 5432)
        assert servers.postgres_answers(host, port)

        async def query() -> int:
            conn = await asyncpg.connect(url)
            try:
                return int(await conn.fetchval("SELECT 41 + 1"))
            finally:
                await conn.close()

        assert asyncio.run(query()) == 42
        dirs = [
            p
            for p in Path("/tmp").glob("msgr-peer-pg-*")
            if (p / "owner.pid").read_text() == str(os.getpid())
        ]
        assert dirs
    assert not servers.postgres_answers(host, port)
    assert not any(d.exists() for d in dirs)


@pytest.mark.slow
@pytest.mark.redis
def test_a_throwaway_redis_starts_answers_and_stops() -> None:
    with servers.start_redis() as url:
        host, port = servers.split_host_port(url, 6379)
        assert servers.redis_ping(host, port)
    assert not servers.redis_ping(host, port)


def test_a_failing_server_reports_its_log(tmp_path: Path) -> None:
    proc = servers.ManagedProcess(
        ["sh", "-c", "echo 'fatal: bad config line 3' >&2; exit 7"], log_path=tmp_path / "x.log", name="fake"
    )
    with pytest.raises(servers.ServerError) as info:
        proc.wait_ready(lambda: False, timeout=30)
    proc.stop()
    assert "code 7" in info.value.message
    assert "bad config line 3" in (info.value.hint or "")


def test_stale_peer_dirs_of_dead_runs_are_removed() -> None:
    stale = Path("/tmp") / f"{servers.PEER_PREFIX}test-stale"
    stale.mkdir(exist_ok=True)
    (stale / "owner.pid").write_text("999999999")
    mine = servers.peer_dir("test-live")
    try:
        servers.remove_stale_peer_dirs()
        assert not stale.exists()
        assert mine.exists()
    finally:
        shutil.rmtree(mine, ignore_errors=True)
