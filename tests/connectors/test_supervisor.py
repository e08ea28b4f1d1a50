from __future__ import annotations

import random
import ssl

import anyio
import pytest
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

from msgr_bridge.backoff import Backoff
from msgr_bridge.connectors.base import BaseConnector
from msgr_bridge.connectors.supervisor import Supervisor
from msgr_bridge.errors import TransientError
from msgr_bridge.schema import ConnectionState
from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.waiting import wait_until

FAST = Backoff(base_s=0.01, cap_s=0.05, rng=random.Random(1))


@pytest.fixture
def net() -> LoopbackNetwork:
    LoopbackNetwork.reset("sup")
    n = LoopbackNetwork.get("sup")
    n.add_user("alice", password="pw")
    n.add_user("bob", password="pw")
    n.create_group("g", "G", ["alice", "bob"])
    return n


def loopback(password: str = "pw", sink: CollectingSink | None = None) -> LoopbackConnector:
    return LoopbackConnector(
        make_context(
            "loopback",
            remote_user_id="alice",
            settings={"network": "sup"},
            secrets={"password": password},
            sink=sink,
        )
    )


async def test_connects_reconnects_after_drop_and_stops(net: LoopbackNetwork) -> None:
    states: list[ConnectionState] = []

    async def on_state(account_id: str, state: ConnectionState, reason: str | None) -> None:
        states.append(state)

    sink = CollectingSink()
    async with Supervisor(backoff=FAST, on_state=on_state) as sup:
        sup.start("a1", loopback(sink=sink))
        await wait_until(lambda: sup.state("a1") == ConnectionState.CONNECTED)
        net.drop("alice")
        await wait_until(lambda: (sup.runtime("a1") or pytest.fail()).restarts == 1)
        await wait_until(lambda: sup.state("a1") == ConnectionState.CONNECTED)
        net.post("g", "bob", "after reconnect")
        await sink.wait_for(lambda p: p.get("text") == "after reconnect")
        await sup.stop("a1")
        assert sup.state("a1") == ConnectionState.STOPPED
    assert ConnectionState.TRANSIENT_DISCONNECT in states
    assert states[-1] == ConnectionState.STOPPED


async def test_bad_credentials_stop_retrying(net: LoopbackNetwork) -> None:
    async with Supervisor(backoff=FAST) as sup:
        rt = sup.start("a1", loopback(password="wrong"))
        await rt.done.wait()
        assert sup.state("a1") == ConnectionState.BAD_CREDENTIALS
        assert "refused the login" in (rt.reason or "")
        assert rt.restarts == 0


class Crashy(BaseConnector):
    network = "crashy"
    crashes = 0

    async def connect(self) -> None:
        return None

    async def subscribe(self) -> None:
        type(self).crashes += 1
        if type(self).crashes < 3:
            raise RuntimeError("boom")
        await anyio.sleep_forever()


async def test_crashed_connector_restarts_with_backoff() -> None:
    async with Supervisor(backoff=FAST) as sup:
        rt = sup.start("c1", Crashy(make_context("crashy")))
        await wait_until(lambda: Crashy.crashes == 3 and sup.state("c1") == ConnectionState.CONNECTED)
        assert rt.restarts == 2
        await sup.stop("c1", timeout=0.5)
    assert sup.state("c1") == ConnectionState.STOPPED


async def test_forced_reconnect_when_deaf(net: LoopbackNetwork) -> None:
    sink = CollectingSink()
    async with Supervisor(backoff=FAST) as sup:
        sup.start("a1", loopback(sink=sink))
        await wait_until(lambda: sup.state("a1") == ConnectionState.CONNECTED)
        net.deafen("alice")
        net.post("g", "bob", "lost to a deaf session")
        sup.reconnect("a1", "sync found unseen messages")
        await wait_until(lambda: (sup.runtime("a1") or pytest.fail()).restarts == 1)
        await wait_until(lambda: sup.state("a1") == ConnectionState.CONNECTED)
        net.post("g", "bob", "heard again")
        await sink.wait_for(lambda p: p.get("text") == "heard again")
        await sup.stop("a1")


class TlsMismatch(BaseConnector):
    network = "tlsmismatch"

    async def connect(self) -> None:
        try:
            raise ssl.SSLError()
        except ssl.SSLError as exc:
            raise TransientError("cannot connect to irc.example:6697: ") from exc


async def test_an_error_without_text_still_gives_the_state_a_reason() -> None:
    """Regression: the state reason of a TLS mismatch ended in an empty text ("...:6697: ")."""
    async with Supervisor(backoff=FAST) as sup:
        rt = sup.start("t1", TlsMismatch(make_context("tlsmismatch")))
        await wait_until(lambda: sup.state("t1") == ConnectionState.TRANSIENT_DISCONNECT)
        assert "cannot connect to irc.example:6697: the TLS handshake failed" in (rt.reason or "")
        await sup.stop("t1", timeout=0.5)
