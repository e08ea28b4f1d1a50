"""SIGTERM with event-stream clients connected stops ``msgr-bridge run`` as fast as with none: the streams are
closed first, each with a ``shutdown`` message carrying its cursor, and IRC accounts still send their QUIT
(issue #10, item 19)."""

from __future__ import annotations

import asyncio
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

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.ngircd import NgircdServer
from msgr_bridge.testing.processes import ManagedProcess, free_port
from msgr_bridge.testing.waiting import wait_until

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


class IrcObserver:
    """An independent IRC user in the channel, recording every line the server sends it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lines: list[str] = []

    @classmethod
    async def join(cls, server: NgircdServer, nick: str, channel: str) -> IrcObserver:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        me = cls(reader, writer)
        writer.write(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {channel}\r\n".encode())
        await writer.drain()
        return me

    async def read(self) -> None:
        while line := await self.reader.readline():
            text_line = line.decode(errors="replace").rstrip("\r\n")
            self.lines.append(text_line)
            if text_line.startswith("PING"):
                self.writer.write(("PONG" + text_line[4:] + "\r\n").encode())

    def saw(self, fragment: str) -> bool:
        return any(fragment in line for line in self.lines)


async def test_irc_accounts_send_their_quit_when_stopped_with_a_stream_open(
    tmp_path: Path, ngircd: NgircdServer
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    db = Database(db_url)
    await db.connect()
    await db.migrate()
    nick = f"brq{os.getpid() % 10000}"
    await AccountRepo(db).ensure_tenant("default")
    await AccountRepo(db).create(
        Account(id="acct-irc", network="irc", remote_user_id=nick),
        settings={
            "host": ngircd.host,
            "port": ngircd.port,
            "tls": False,
            "nick": nick,
            "channels": ["#shut"],
        },
    )
    token = (await TokenStore(db).create(tenant="default", name="t", scopes=["read:*"])).token
    await db.close()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
        "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
        "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "10",
        "MSGR_BRIDGE__DATABASE__URL": db_url,
        "MSGR_BRIDGE__API__PORT": str(port),
        "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
    }
    observer = await IrcObserver.join(ngircd, f"obs{os.getpid() % 10000}", "#shut")
    cli = [sys.executable, "-m", "msgr_bridge.cli", "run"]
    bridge = ManagedProcess(cli, log_path=tmp_path / "bridge.log", cwd=tmp_path, env=env, stop_timeout=60)
    base = f"http://127.0.0.1:{port}"
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(observer.read)
            await anyio.to_thread.run_sync(lambda: bridge.wait_ready(lambda: _ready(base)))
            await wait_until(lambda: observer.saw(f":{nick}!") and observer.saw("JOIN"), timeout=20)
            auth = {"Authorization": f"Bearer {token}"}
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(base.replace("http", "ws") + "/v1/events", headers=auth) as ws,
                http.get(base + "/v1/events", headers=auth) as sse,
            ):
                # Events stored since the stream took its cursor (the account's first sync) come first.
                while (frame := json.loads((await ws.receive(timeout=10)).data))["type"] == "events":
                    pass
                assert frame["type"] == "live", frame
                assert sse.status == 200
                stopped_s = await _stopped_after(bridge)  # SIGTERM, streams open and not read
            await wait_until(lambda: observer.saw(f":{nick}!") and observer.saw("QUIT"), timeout=10)
            tg.cancel_scope.cancel()
    finally:
        bridge.stop()
        observer.writer.close()
    [quit_line] = [line for line in observer.lines if line.startswith(f":{nick}!") and " QUIT " in line]
    assert "msgr-bridge disconnecting" in quit_line, quit_line
    assert stopped_s < 5.0, stopped_s
