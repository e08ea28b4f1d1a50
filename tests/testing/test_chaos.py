"""msgr_bridge.testing.chaos without a database: the subprocess wrapper and its environment (the chaos tests
``tests/test_chaos*.py`` use the rest against PostgreSQL and the fakes)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from msgr_bridge.testing import chaos


def test_bridge_env_drops_inherited_settings_and_puts_extra_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSGR_BRIDGE__API__HOST", "0.0.0.0")
    env = chaos.bridge_env(
        "sqlite:///x.db", tmp_path, "8123", sync_interval_s=2, extra={"MSGR_BRIDGE__LOGGING__LEVEL": "debug"}
    )
    assert "MSGR_BRIDGE__API__HOST" not in env and env["PATH"]
    assert env["MSGR_BRIDGE__DATABASE__URL"] == "sqlite:///x.db"
    assert env["MSGR_BRIDGE__BRIDGE__DATA_DIR"] == str(tmp_path)
    assert env["MSGR_BRIDGE__API__PORT"] == "8123" and env["MSGR_BRIDGE__SYNC__INTERVAL_S"] == "2"
    assert env["MSGR_BRIDGE__LOGGING__LEVEL"] == "debug"
    assert "MSGR_BRIDGE__SYNC__INTERVAL_S" not in chaos.bridge_env("sqlite:///x.db", tmp_path, "1")


async def test_waiting_fails_with_the_log_when_the_bridge_exits_on_its_own(tmp_path: Path) -> None:
    env = chaos.bridge_env("not-a-url", tmp_path / "data", "1")
    bridge = chaos.BridgeProcess(tmp_path, env)
    bridge.start()
    with pytest.raises(AssertionError, match="exited on its own") as failed:
        await bridge.wait_for(lambda: False, 0.05)
    assert "invalid database URL" in str(failed.value)
    assert bridge.runs == 1 and not bridge.alive()


async def test_wait_for_gives_up_after_its_tries_and_kill_ends_the_run(tmp_path: Path) -> None:
    bridge = chaos.BridgeProcess(tmp_path, {})
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    bridge.proc = subprocess.Popen(sleeper)  # noqa: ASYNC220 - as BridgeProcess.start does: Popen returns at once
    answers = iter([False, False, True])
    assert await bridge.wait_for(lambda: next(answers), 0.01)
    assert not await bridge.wait_for(lambda: False, 0.01, tries=3)
    bridge.assert_alive()
    await bridge.kill()
    assert not bridge.alive() and bridge.proc.returncode == -9


async def test_kill_and_restart_kills_waits_and_starts_each_time(tmp_path: Path) -> None:
    events: list[str] = []

    class Recorded(chaos.BridgeProcess):
        def start(self) -> None:
            events.append("start")

        async def kill(self) -> None:
            events.append("kill")

        def alive(self) -> bool:
            return True

    async def before(i: int) -> None:
        events.append(f"before {i}")

    bridge = Recorded(tmp_path, {})
    await chaos.kill_and_restart(bridge, random.Random(1), kills=2, before_kill=before, pause=(0, 0))

    async def restart() -> None:
        events.append("restart")

    await chaos.kill_and_restart(bridge, random.Random(1), kills=1, before_kill=before, restart=restart)
    assert events == [
        *("before 0", "kill", "start", "before 1", "kill", "start"),
        *("before 0", "kill", "restart"),
    ]
