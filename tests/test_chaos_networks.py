"""Chaos against real servers: ``msgr-bridge run`` SIGKILLed and restarted while API clients send into a
channel on a real ngIRCd and an independent IRC user talks in it (issue 10, item 8).

IRC neither echoes our sends nor drops a repeated transaction id, so a kill can duplicate the one send of a
conversation that was on the wire at that instant: at most one duplicate per kill, none lost. IRC cannot
replay either: a line read but not yet committed when the process dies is gone, and lines sent while the
bridge is down are never seen; so every line the other user sent while the bridge was in the channel, more
than a second before a kill, must be stored, once.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from sqlalchemy import text

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing import servers
from msgr_bridge.testing.ngircd import NgircdServer, running_ngircd

from .test_chaos import BridgeProcess, _send_through_api, chaos_db  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

KILLS = 2
SENDS = 100
CHANNEL = "#chaos"
BRIDGE_NICK = "chaosbridge"
PEER_NICK = "chaospeer"
IRC_ACCOUNT = "acc-chaos-irc"


@pytest.fixture
def ngircd() -> Iterator[NgircdServer]:
    with running_ngircd() as server:
        yield server


class IrcPeer:
    """The other party: a plain IRC client that logs what the bridge says and when it joins and leaves."""

    def __init__(self, server: NgircdServer) -> None:
        self.server = server
        self.received: Counter[str] = Counter()
        self.joins: list[float] = []
        self.stream: SocketStream | None = None

    async def connect(self) -> None:
        self.stream = await anyio.connect_tcp(self.server.host, self.server.port)
        self.lines = BufferedByteReceiveStream(self.stream)
        await self.send(f"NICK {PEER_NICK}")
        await self.send(f"USER {PEER_NICK} 0 * :peer")
        await self._until(" 001 ")
        await self.send(f"JOIN {CHANNEL}")
        await self._until(" 366 ")

    async def send(self, line: str) -> None:
        assert self.stream is not None
        await self.stream.send(line.encode() + b"\r\n")

    async def _until(self, marker: str) -> None:
        with anyio.fail_after(10):
            while marker not in await self._line():
                pass

    async def _line(self) -> str:
        line = (await self.lines.receive_until(b"\r\n", 65536)).decode(errors="replace")
        if line.startswith("PING"):
            await self.send("PONG" + line[4:])
        return line

    async def read(self) -> None:
        while True:
            line = await self._line()
            prefix, _, rest = line.partition(" ")
            if not prefix.startswith(f":{BRIDGE_NICK}!"):
                continue
            if rest.startswith(f"PRIVMSG {CHANNEL} :"):
                self.received[rest.split(" :", 1)[1]] += 1
            elif rest.startswith("JOIN"):
                self.joins.append(time.monotonic())

    async def say(self, text_: str) -> None:
        await self.send(f"PRIVMSG {CHANNEL} :{text_}")


async def prepare_irc(url: str, server: NgircdServer) -> str:
    """The IRC account (no secrets: the test server has no passwords) and an API token."""
    async with Database(url) as db:
        await AccountRepo(db).create(
            Account(id=IRC_ACCOUNT, network="irc", remote_user_id=f"{server.host}/{BRIDGE_NICK}"),
            settings={
                "host": server.host,
                "port": server.port,
                "tls": False,
                "nick": BRIDGE_NICK,
                "channels": [CHANNEL],
                "max_send_wait": 60,
            },
        )
        token = await TokenStore(db).create(tenant="default", name="chaos-irc", scopes=["admin:*"])
    return str(token.token)


async def stored_lines(url: str) -> Counter[str]:
    async with Database(url) as db, db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT text, count(*) FROM messages WHERE network = 'irc' AND text LIKE 'remote line %' "
                    "GROUP BY text"
                )
            )
        ).all()
    return Counter({r[0]: int(r[1]) for r in rows})


async def test_sigkill_chaos_against_ngircd(chaos_db: str, tmp_path: Path, ngircd: NgircdServer) -> None:  # noqa: F811
    rng = random.Random(8)
    token = await prepare_irc(chaos_db, ngircd)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
        "MSGR_BRIDGE__DATABASE__URL": chaos_db,
        "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
        "MSGR_BRIDGE__API__PORT": str(servers.free_port()),
        "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
        "MSGR_BRIDGE__LOGGING__FORMAT": "json",
        "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "5",
    }
    bridge = BridgeProcess(tmp_path, env)
    peer = IrcPeer(ngircd)
    await peer.connect()
    posted: list[tuple[str, float]] = []
    kills: list[float] = []
    accepted: list[str] = []
    done = anyio.Event()
    conversation = f"{ngircd.host}/{CHANNEL}"

    async def talk() -> None:
        for i in range(100_000):
            if done.is_set():
                return
            line = f"remote line {i}"
            await peer.say(line)
            posted.append((line, time.monotonic()))
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(peer.read)
        tg.start_soon(talk)
        with anyio.fail_after(240):
            async with anyio.create_task_group() as load:
                load.start_soon(
                    lambda: _send_through_api(
                        env["MSGR_BRIDGE__API__PORT"],
                        token,
                        accepted,
                        rng,
                        SENDS,
                        account=IRC_ACCOUNT,
                        conversation=conversation,
                    )
                )
                for _ in range(KILLS):
                    bridge.start()
                    await anyio.sleep(rng.uniform(5.0, 9.0))
                    assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                    kills.append(time.monotonic())
                    await bridge.kill()
                    await anyio.sleep(rng.uniform(0.2, 1.0))
                bridge.start()
            try:
                sent_texts = [f"outbound {i}" for i in range(SENDS)]
                while not all(peer.received[t] for t in sent_texts):
                    assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                    await anyio.sleep(0.5)
                done.set()
                await anyio.sleep(3)  # the last remote lines reach the store
            finally:
                await bridge.stop()
        tg.cancel_scope.cancel()
    assert peer.stream is not None
    await peer.stream.aclose()

    stored = await stored_lines(chaos_db)
    duplicates = sum(n - 1 for n in peer.received.values() if n > 1)
    print(
        f"irc chaos: {bridge.runs} runs, {len(accepted)} sends, {duplicates} duplicate(s), {len(posted)} read"
    )
    assert len(accepted) == SENDS
    assert duplicates <= KILLS, f"{duplicates} duplicates after {KILLS} kills: {peer.received.most_common(5)}"
    assert not {t: n for t, n in stored.items() if n > 1}, "a remote line was stored twice"

    # Lines the bridge was in the channel for, and that were sent over a second before a kill, are stored.
    def must_be_stored(at: float) -> bool:
        joined = [j for j in peer.joins if j + 0.5 < at]
        if not joined:
            return False
        later_kills = [k for k in kills if k > joined[-1]]
        return not later_kills or at < later_kills[0] - 1.0

    expected = [line for line, at in posted if must_be_stored(at)]
    lost = [line for line in expected if not stored[line]]
    assert len(expected) > 50
    assert not lost, f"{len(lost)} line(s) lost that were read over a second before a kill: {lost[:5]}"
