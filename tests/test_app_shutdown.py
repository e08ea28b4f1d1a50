"""SIGTERM with event-stream clients connected stops ``msgr-bridge run`` as fast as with none: the streams are
closed first, each with a ``shutdown`` message carrying its cursor (issue #10, item 19)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import anyio

from msgr_bridge.testing.processes import ManagedProcess, free_port

SHUTDOWN_TIMEOUT_S = 20
"""The configured bound: before the fix, connected streams made shutdown wait for (a large part of) it."""


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _start(tmp: Path) -> tuple[ManagedProcess, str, str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
        "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp / "data"),
        "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
        "MSGR_BRIDGE__API__PORT": str(port),
        "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
    }
    cli = [sys.executable, "-m", "msgr_bridge.cli"]
    subprocess.run([*cli, "migrate"], env=env, cwd=tmp, check=True, capture_output=True)
    made = subprocess.run(
        [*cli, "tokens", "create", "--name", "t", "--scope", "read", "--json"],
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
        text=True,
    )
    bridge = ManagedProcess([*cli, "run"], log_path=tmp / "bridge.log", cwd=tmp, env=env, stop_timeout=60)
    base = f"http://127.0.0.1:{port}"
    bridge.wait_ready(lambda: _ready(base))
    return bridge, base, json.loads(made.stdout)["token"]


async def _stopped_after(bridge: ManagedProcess) -> float:
    started = time.monotonic()
    bridge.send_signal(signal.SIGTERM)
    code = await anyio.to_thread.run_sync(lambda: bridge.process.wait(SHUTDOWN_TIMEOUT_S + 10))
    assert code == 0, bridge.tail()
    return time.monotonic() - started


async def test_sigterm_with_open_streams_stops_as_fast_as_without(tmp_path: Path) -> None:
    (tmp_path / "idle").mkdir()
    bridge, _, _ = _start(tmp_path / "idle")
    try:
        idle_s = await _stopped_after(bridge)
    finally:
        bridge.stop()

    (tmp_path / "busy").mkdir()
    bridge, base, token = _start(tmp_path / "busy")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(base.replace("http", "ws") + "/v1/events", headers=headers) as ws,
            http.get(base + "/v1/events", headers=headers) as sse,
        ):
            first = json.loads((await ws.receive(timeout=10)).data)
            assert first["type"] == "live"
            await sse.content.readuntil(b"\n\n")  # the SSE stream is live too
            busy_s = await _stopped_after(bridge)
            last = json.loads((await ws.receive(timeout=5)).data)
            assert last == {"type": "shutdown", "cursor": first["cursor"]}
            assert b"event: shutdown" in await sse.content.read()
    finally:
        bridge.stop()
    assert busy_s < max(3.0, idle_s + 2.0), (busy_s, idle_s)
