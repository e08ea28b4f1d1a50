"""The IRC connector passes the connector contract suite against a real ngIRCd.

The shared conversation is a channel both join (a private message would depend on the nick the server
gave the connector). The other person is the conftest's independent bottom client (``peers`` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_irc import IrcConnector

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.contract_state import StateContract
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness
from msgr_bridge.testing.ngircd import NgircdServer


class IrcHarness(ConnectorHarness):
    connector_class = IrcConnector
    can_restart = True

    def __init__(self, server: NgircdServer, peers: Callable[..., Any], uniq: Callable[[str], str]) -> None:
        super().__init__()
        self.server, self.peers, self.uniq = server, peers, uniq
        self.nick = uniq("Contract")
        self.channel = uniq("#contract")
        self.conversation_id = f"{server.host.lower()}/{self.channel}"
        self.peer: Any = None

    async def start(self) -> None:
        self.peer = await self.peers(self.uniq("Other"), self.server)
        await self.peer.join(self.channel)

    def link_settings(self) -> Mapping[str, Any]:
        return {"host": self.server.host, "port": self.server.port, "tls": False}

    def link_answers(self) -> Mapping[str, str]:
        return {"nick": self.nick, "channels": self.channel, "server_password": self.server.password or ""}

    def bad_link_answers(self) -> Mapping[str, str]:
        return {"nick": self.uniq("Refused"), "server_password": "not-the-password"}

    async def peer_send(self, text: str) -> str | None:
        await self.peer.command(f"PRIVMSG {self.channel} :{text}")
        return None  # ngIRCd sends no msgid tag: the connector synthesizes ids

    async def peer_settle(self) -> None:
        await self.peer.command(f"NAMES {self.channel}", wait="RPL_ENDOFNAMES")

    async def peer_wait_message(self, text: str) -> str:
        peer = self.peer
        async with asyncio.timeout(WAIT_S):
            while True:
                for kw in peer.privmsgs:
                    if kw.get("target") == self.channel and text in kw.get("message", ""):
                        return str(kw["message"])
                peer._changed.clear()
                await peer._changed.wait()

    async def stop_server(self) -> None:
        self.server.stop()

    async def start_server(self) -> None:
        self.server.start()
        await self.start()

    def sample_payloads(self) -> Sequence[RawPayload]:
        host, chan = self.server.host, self.channel
        base = {"v": 1, "server": host, "self_nick": self.nick, "received_at": "2026-01-02T03:04:05+00:00",
                "casemapping": "rfc1459", "chantypes": "#&"}  # fmt: skip
        return [
            {**base, "line": f":Bob!b@h PRIVMSG {chan} :hello"},
            {**base, "line": f"@msgid=x1;time=2026-05-06T07:08:09.123Z :Bob!b@h PRIVMSG {chan} :tagged"},
            {**base, "line": f":Bob!b@h PRIVMSG {self.nick} :private"},
            {**base, "line": f":Bob!b@h PRIVMSG {chan} :\x01ACTION waves\x01"},
            {**base, "line": f":Bob!b@h NOTICE {chan} :a notice"},
            {**base, "line": f"@label=txn-1 :{self.nick}!x@h PRIVMSG {chan} :mine"},
            {**base, "line": f":Bob!b@h JOIN {chan}"},
            {**base, "line": f":Bob!b@h PART {chan} :bye"},
            {**base, "line": f":Op!o@h KICK {chan} Bob :out"},
            {**base, "line": ":Bob!b@h NICK Robert", "channels": [chan]},
            {**base, "line": ":Bob!b@h QUIT :gone", "channels": [chan]},
        ]


@pytest.fixture
async def connector_harness(
    ngircd: NgircdServer, peers: Callable[..., Any], uniq: Callable[[str], str]
) -> AsyncIterator[IrcHarness]:
    harness = IrcHarness(ngircd, peers, uniq)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass


class TestStateContract(StateContract):
    pass
