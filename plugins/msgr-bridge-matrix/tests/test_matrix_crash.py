"""SIGKILL between push and commit, against the real Synapse (issue #10 item 2).

The bridge runs as its own process (``held_bridge.py``: ``msgr-bridge run`` with the inbound commit held
while a file exists). The other person sends messages; once the bridge has pushed them (the held commit
logs them) it is killed with SIGKILL before they are committed. Started again without the hold, the bridge
resumes from the last token whose events were committed: every message is stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from matrix_peer import Peer
from mautrix.types import RoomID

from msgr_bridge.testing.processes import ManagedProcess, free_port
from msgr_bridge.testing.synapse import SynapseServer
from msgr_bridge.testing.waiting import wait_until

HERE = Path(__file__).parent


class BridgeProcess:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.hold = tmp / "hold"
        self.pushed_log = tmp / "pushed.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
            "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp / "data"),
            "MSGR_BRIDGE__API__PORT": str(self.port),
            "MSGR_BRIDGE__LOGGING__LEVEL": "info",
            "MSGR_BRIDGE__LOGGING__FORMAT": "json",
            "MSGR_BRIDGE__SYNC__INTERVAL_S": "3600",
            "MSGR_TEST_HOLD_FILE": str(self.hold),
            "MSGR_TEST_PUSHED_LOG": str(self.pushed_log),
            "PYTHONPATH": str(HERE),
        }
        cli = [sys.executable, "-m", "msgr_bridge.cli"]
        subprocess.run([*cli, "migrate"], env=self.env, cwd=tmp, check=True, capture_output=True)
        made = subprocess.run(
            [*cli, "tokens", "create", "--name", "crash", "--scope", "admin", "--json"],
            env=self.env,
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        )
        self.token = json.loads(made.stdout)["token"]
        self.process: ManagedProcess | None = None
        self.runs = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.runs += 1
        self.process = ManagedProcess(
            [sys.executable, str(HERE / "held_bridge.py")],
            log_path=self.tmp / f"bridge-{self.runs}.log",
            cwd=self.tmp,
            env=self.env,
            stop_timeout=30,
            name="held-bridge",
        )
        self.process.wait_ready(self._ready)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.running:
            self.process.stop()

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def pushed(self) -> set[str]:
        """Event ids whose push to the inbound pipeline returned (committed or not)."""
        if not self.pushed_log.exists():
            return set()
        return set(self.pushed_log.read_text().split())

    def stored(self, account_id: str, room: str) -> list[str]:
        """Remote ids of the room's stored messages (every page), one entry per stored row."""
        ids: list[str] = []
        path = (
            f"/v1/accounts/{account_id}/conversations/{urllib.parse.quote(room, safe='')}/messages?limit=500"
        )
        try:
            page = self.call("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # the conversation is not stored yet (the first sync is still running)
                return []
            raise
        ids += [m["id"] for m in page["messages"]]
        assert page["next_cursor"] is None
        return ids


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BridgeProcess]:
    process = BridgeProcess(tmp_path)
    try:
        yield process
    finally:
        process.stop()


async def test_sigkill_between_push_and_commit_loses_and_doubles_nothing(
    synapse: SynapseServer, me: Peer, other: Peer, bridge: BridgeProcess
) -> None:
    room = await other.room_with(me, direct=True)
    bridge.start()
    flow = bridge.call(
        "POST", "/v1/links", {"network": "matrix", "settings": {"homeserver": synapse.base_url}}
    )
    done = bridge.call(
        "POST",
        f"/v1/links/{flow['id']}/answers",
        {"answers": {"user_id": me.user_id, "password": me.password}},
    )
    assert done["status"] == "linked", done
    account = done["account"]["id"]
    first = str(await other.client.send_text(RoomID(room), "committed before the kill"))
    await wait_until(lambda: first in bridge.stored(account, room), timeout=30)

    bridge.hold.touch()
    in_flight = [str(await other.client.send_text(RoomID(room), f"in flight {i}")) for i in range(5)]
    await wait_until(lambda: set(in_flight) <= bridge.pushed(), timeout=30)  # pushed, commit held
    await asyncio.sleep(
        1.0
    )  # what the connector does after its pushes (it stored the token here before the fix)
    bridge.kill()

    bridge.hold.unlink()
    bridge.start()
    after = str(await other.client.send_text(RoomID(room), "after the restart"))
    everything = [first, *in_flight, after]
    try:
        await wait_until(lambda: set(everything) <= set(bridge.stored(account, room)), timeout=60)
    except TimeoutError:
        missing = set(everything) - set(bridge.stored(account, room))
        raise AssertionError(f"lost after the kill: {sorted(missing)}") from None
    stored = bridge.stored(account, room)
    assert sorted(stored) == sorted(everything)  # each exactly once, nothing else
