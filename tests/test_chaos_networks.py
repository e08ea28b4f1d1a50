"""Chaos against real servers: ``msgr-bridge run`` SIGKILLed and restarted while API clients send into a
channel on a real ngIRCd (or a room on a real Synapse) and an independent user talks in it (issue 10,
item 8). The loopback variant is ``test_chaos.py``.

IRC neither echoes our sends nor drops a repeated transaction id, so a kill can duplicate the one send of a
conversation that was on the wire at that instant: at most one duplicate per kill, none lost. IRC cannot
replay either: a line read but not yet committed when the process dies is gone, and lines sent while the
bridge is down are never seen; so every line the other user sent while the bridge was in the channel, more
than a second before a kill, must be stored, once.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from msgr_bridge.schema import Account
from msgr_bridge.testing import chaos, servers
from msgr_bridge.testing.ngircd import NgircdServer, running_ngircd
from msgr_bridge.testing.synapse import SynapseServer, start_synapse
from msgr_bridge.testing.waiting import wait_until

from .test_chaos import chaos_db  # noqa: F401  (fixture)

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
    settings = {
        "host": server.host,
        "port": server.port,
        "tls": False,
        "nick": BRIDGE_NICK,
        "channels": [CHANNEL],
        "max_send_wait": 60,
    }
    account = Account(id=IRC_ACCOUNT, network="irc", remote_user_id=f"{server.host}/{BRIDGE_NICK}")
    return await chaos.prepare_account(url, account, settings=settings, token_name="chaos-irc")


async def test_sigkill_chaos_against_ngircd(chaos_db: str, tmp_path: Path, ngircd: NgircdServer) -> None:  # noqa: F811
    rng = random.Random(8)
    token = await prepare_irc(chaos_db, ngircd)
    port = str(servers.free_port())
    env = chaos.bridge_env(chaos_db, tmp_path / "data", port)
    bridge = chaos.BridgeProcess(tmp_path, env)
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

    async def lines_flowing(_: int) -> None:
        """Kill while sends are flowing: after a few more lines reached the channel."""
        target = sum(peer.received.values()) + rng.randint(5, 15)
        await bridge.wait_for(lambda: sum(peer.received.values()) >= target, 0.05)
        await anyio.sleep(rng.uniform(0.0, 0.5))
        kills.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(peer.read)
        tg.start_soon(talk)
        with anyio.fail_after(240):
            async with anyio.create_task_group() as load:
                load.start_soon(
                    lambda: chaos.send_through_api(
                        port,
                        token,
                        accepted,
                        rng,
                        SENDS,
                        account=IRC_ACCOUNT,
                        conversation=conversation,
                    )
                )
                bridge.start()
                await chaos.kill_and_restart(
                    bridge, rng, kills=KILLS, before_kill=lines_flowing, pause=(0.2, 1.0), check_alive=False
                )
            try:
                sent_texts = [f"outbound {i}" for i in range(SENDS)]
                await bridge.wait_for(lambda: all(peer.received[t] for t in sent_texts), 0.5)
                done.set()
                await anyio.sleep(3)  # the last remote lines reach the store
            finally:
                await bridge.stop()
        tg.cancel_scope.cancel()
    assert peer.stream is not None
    await peer.stream.aclose()

    stored = await chaos.stored_texts(chaos_db, "irc", "remote line %")
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


# --- Matrix against Synapse ---------------------------------------------------------------------------

MATRIX_ACCOUNT = "acc-chaos-matrix"
MATRIX_SENDS = 200
MATRIX_KILLS = 3


@pytest.fixture
def synapse() -> Iterator[SynapseServer]:
    server = start_synapse()
    try:
        yield server
    finally:
        server.cleanup()


class MatrixPeer:
    """The other party: a Matrix user talking to the homeserver's client API directly."""

    def __init__(self, server: SynapseServer, token: str, room: str) -> None:
        self.server, self.token, self.room = server, token, room
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
        self.txn = itertools.count()

    def _room(self, path: str) -> str:
        return f"{self.server.base_url}/_matrix/client/v3/rooms/{quote(self.room, safe='')}{path}"

    async def say(self, body: str) -> None:
        content = {"msgtype": "m.text", "body": body}
        async with self.http.put(self._room(f"/send/m.room.message/peer{next(self.txn)}"), json=content) as r:
            assert r.status == 200, await r.text()

    async def bodies_from(self, sender: str) -> Counter[str]:
        """Every message body ``sender`` posted in the room (paginated backwards through the whole room)."""
        out: Counter[str] = Counter()
        token: str | None = None
        while True:
            params = {"dir": "b", "limit": "1000", **({"from": token} if token else {})}
            async with self.http.get(self._room("/messages"), params=params) as r:
                page = await r.json()
            for event in page.get("chunk", []):
                if event.get("type") == "m.room.message" and event.get("sender") == sender:
                    out[event["content"].get("body", "")] += 1
            token = page.get("end")
            if not page.get("chunk") or not token:
                return out


async def prepare_matrix(url: str, tmp: Path, server: SynapseServer) -> tuple[str, MatrixPeer, str]:
    """The bridge's Matrix user (password in the keystore), the other user, a room both are in, a token."""
    bot = server.register_user("chaosbot", "pw-chaosbot")
    other = server.register_user("chaospeer", "pw-chaospeer")
    room = server._http(
        "POST", "/_matrix/client/v3/createRoom", {"invite": [bot["user_id"]]}, token=other["access_token"]
    )["room_id"]
    server._http("POST", f"/_matrix/client/v3/join/{quote(room, safe='')}", {}, token=bot["access_token"])
    token = await chaos.prepare_account(
        url,
        Account(id=MATRIX_ACCOUNT, network="matrix", remote_user_id=bot["user_id"]),
        settings={"homeserver": server.base_url, "user_id": bot["user_id"]},
        secrets={"password": "pw-chaosbot"},
        data_dir=tmp / "data",
        token_name="chaos-matrix",
    )
    return token, MatrixPeer(server, other["access_token"], room), bot["user_id"]


async def test_sigkill_chaos_against_synapse(chaos_db: str, tmp_path: Path, synapse: SynapseServer) -> None:  # noqa: F811
    """Matrix echoes our sends (with their transaction id) and catches up from its sync token: nothing
    lost, nothing duplicated, either way."""
    rng = random.Random(9)
    token, peer, bot = await prepare_matrix(chaos_db, tmp_path, synapse)
    port = str(servers.free_port())
    env = chaos.bridge_env(chaos_db, tmp_path / "data", port)
    bridge = chaos.BridgeProcess(tmp_path, env)
    posted: list[str] = []
    accepted: list[str] = []
    sent_texts = [f"outbound {i}" for i in range(MATRIX_SENDS)]

    async def sends_flowing(_: int) -> None:
        """Kill while sends are flowing: after 10 to 30 more reached the room."""
        target = sum((await peer.bodies_from(bot)).values()) + rng.randint(10, 30)

        async def reached() -> bool:
            return sum((await peer.bodies_from(bot)).values()) >= target

        await bridge.wait_for(reached, 0.2)
        await anyio.sleep(rng.uniform(0.0, 0.5))

    async def all_sent() -> bool:
        received = await peer.bodies_from(bot)
        return all(received[t] for t in sent_texts)

    async def all_stored() -> bool:
        return set(posted) <= (await chaos.stored_texts(chaos_db, "matrix", "remote line %")).keys()

    try:
        with anyio.fail_after(300):
            async with anyio.create_task_group() as load:

                async def talk() -> None:
                    for i in range(300):
                        await peer.say(f"remote line {i}")
                        posted.append(f"remote line {i}")
                        await anyio.sleep(0.05)

                load.start_soon(talk)
                load.start_soon(
                    lambda: chaos.send_through_api(
                        port,
                        token,
                        accepted,
                        rng,
                        MATRIX_SENDS,
                        account=MATRIX_ACCOUNT,
                        conversation=peer.room,
                    )
                )
                bridge.start()
                await chaos.kill_and_restart(
                    bridge,
                    rng,
                    kills=MATRIX_KILLS,
                    before_kill=sends_flowing,
                    pause=(0.2, 1.0),
                    check_alive=False,
                )
            try:
                # a send recovered from a kill waits echo_grace_s (10 s) for its echo before it is resent
                with anyio.move_on_after(120):
                    await bridge.wait_for(all_sent, 1)
                with contextlib.suppress(TimeoutError):
                    await wait_until(all_stored, timeout=30, interval=1)
            finally:
                await bridge.stop()
        received = await peer.bodies_from(bot)
    finally:
        await peer.http.close()
    stored = await chaos.stored_texts(chaos_db, "matrix", "remote line %")
    lost_sends = [t for t in sent_texts if not received[t]]
    lost_remote = [t for t in posted if not stored[t]]
    twice = {t: n for t, n in received.items() if n > 1}
    print(f"matrix chaos: {bridge.runs} runs, {len(accepted)} sends, {len(posted)} remote messages")
    assert len(accepted) == MATRIX_SENDS
    assert not lost_sends, f"{len(lost_sends)} accepted send(s) never reached the room"
    assert not twice, f"{len(twice)} send(s) reached the room more than once"
    assert not lost_remote, f"{len(lost_remote)} remote message(s) never stored (e.g. {lost_remote[:3]})"
    assert not {t: n for t, n in stored.items() if n > 1}, "a remote message was stored twice"
