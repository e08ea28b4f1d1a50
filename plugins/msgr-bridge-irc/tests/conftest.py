"""Fixtures: a real ngIRCd (session-wide, with a server password and a TLS port), a connector factory,
and "the other person": an independent bottom 3 client on the same server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import bottom
import pytest
from msgr_bridge_irc import IrcConnector

from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.ngircd import NgircdServer, running_ngircd

SERVER_PASSWORD = "letmein"
_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


@pytest.fixture(scope="session")
def ngircd() -> Iterator[NgircdServer]:
    with running_ngircd(password=SERVER_PASSWORD, tls=True) as server:
        yield server


class Peer:
    """A second, independent IRC user (plain bottom 3 with its RFC 2812 events)."""

    def __init__(self, server: NgircdServer, nick: str) -> None:
        self.nick = nick
        self.client = bottom.Client(server.host, server.port, ssl=False)
        self.password = server.password
        self.privmsgs: list[dict[str, Any]] = []
        self.raw_lines: list[bytes] = []
        self._changed = asyncio.Event()
        self.client.on("privmsg", self._on_privmsg)
        self.client.on("ping", self._on_ping)
        self.client.message_handlers.insert(0, self._on_raw)

    async def _on_raw(self, next_handler: Any, client: Any, message: bytes) -> None:
        self.raw_lines.append(message)
        await next_handler(client, message)

    async def _on_ping(self, message: str, **kw: Any) -> None:
        await self.client.send("pong", message=message)

    async def _on_privmsg(self, **kw: Any) -> None:
        self.privmsgs.append(kw)
        self._changed.set()

    async def start(self) -> Peer:
        await self.client.connect()
        done = asyncio.create_task(bottom.wait_for(self.client, ["RPL_ENDOFMOTD", "ERR_NOMOTD"]))
        await asyncio.sleep(0)
        if self.password:
            await self.client.send("pass", password=self.password)
        await self.client.send("nick", nick=self.nick)
        await self.client.send("user", nick=self.nick, realname="peer")
        async with asyncio.timeout(5):
            await done
        return self

    async def command(self, line: str, *, wait: str | None = None) -> dict[str, Any] | None:
        waiter = asyncio.create_task(self.client.wait(wait)) if wait else None
        await asyncio.sleep(0)
        await self.client.send_message(line)
        if waiter is None:
            return None
        async with asyncio.timeout(5):
            return await waiter

    async def join(self, channel: str) -> None:
        await self.command(f"JOIN {channel}", wait="RPL_ENDOFNAMES")

    async def wait_privmsgs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.privmsgs) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.privmsgs

    async def close(self) -> None:
        if not self.client.is_closing():
            await self.client.send_message("QUIT :bye")
            await self.client.disconnect()


@pytest.fixture
async def peers(ngircd: NgircdServer) -> AsyncIterator[Callable[..., Any]]:
    started: list[Peer] = []

    async def make(nick: str | None = None, server: NgircdServer | None = None) -> Peer:
        peer = await Peer(server or ngircd, nick or unique("peer")).start()
        started.append(peer)
        return peer

    yield make
    for peer in started:
        await peer.close()


def connector_for(
    server: NgircdServer, *, secrets: dict[str, str] | None = None, **settings: Any
) -> IrcConnector:
    base: dict[str, Any] = {"host": server.host, "port": server.port, "tls": False, "nick": unique("bridge")}
    base.update(settings)
    if secrets is None:
        secrets = {"server_password": server.password} if server.password else {}
    ctx = make_context("irc", settings=base, secrets=secrets, sink=CollectingSink())
    return IrcConnector(ctx)


class Running:
    """A connected connector with its subscribe() task."""

    def __init__(self, connector: IrcConnector) -> None:
        self.connector = connector
        self.task: asyncio.Task[None] | None = None

    @property
    def sink(self) -> CollectingSink:
        sink = self.connector.ctx.sink
        assert isinstance(sink, CollectingSink)
        return sink

    async def start(self) -> Running:
        await self.connector.connect()
        self.task = asyncio.create_task(self.connector.subscribe())
        return self

    async def stop(self) -> None:
        await self.connector.disconnect()
        if self.task is not None:
            async with asyncio.timeout(5):
                await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def running(ngircd: NgircdServer) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def make(server: NgircdServer | None = None, **settings: Any) -> Running:
        r = await Running(connector_for(server or ngircd, **settings)).start()
        started.append(r)
        return r

    yield make
    for r in started:
        await r.stop()


@pytest.fixture
def make_connector() -> Callable[..., IrcConnector]:
    return connector_for


@pytest.fixture
def uniq() -> Callable[[str], str]:
    return unique
