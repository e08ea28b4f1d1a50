"""A flood while the pipeline is paused stays bounded (issue #10 item 7).

A wire-level fake server on 127.0.0.1 registers the connector, then writes 100,000 channel lines as fast as
TCP lets it (``drain()``, so it only gets ahead while the client reads). The sink holds every push (the
persistence stage paused). The connector used to read everything into an unbounded queue: the server wrote
all 100,000 lines and the bridge held them in memory. With the bounded reader the socket is no longer read
once ``read_queue`` lines wait, so the server is stuck after what the kernel buffers hold."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from msgr_bridge_irc import IrcConnector

from msgr_bridge.connectors.protocol import Ack, RawPayload
from msgr_bridge.testing.fakes import make_context

LINES = 100_000
FILLER = "x" * 300  # long lines: the kernel's socket buffers hold few of them

pytestmark = pytest.mark.timeout(180)


class FloodServer:
    def __init__(self) -> None:
        self.written = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):  # the client went away mid-flood
            await self._flood(reader, writer)

    async def _flood(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            if line.startswith("USER"):
                writer.write(b":flood.test 001 bridge :Welcome bridge!u@127.0.0.1\r\n")
                writer.write(b":flood.test 422 bridge :MOTD File is missing\r\n")
                await writer.drain()
                break
        for i in range(LINES):
            writer.write(f":peer!p@127.0.0.1 PRIVMSG #flood :{i} {FILLER}\r\n".encode())
            self.written += 1
            if i % 64 == 0:
                await writer.drain()
        await writer.drain()
        await reader.read()  # until the client goes

    async def __aenter__(self) -> FloodServer:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


class PausedSink:
    """A sink whose pushes wait until ``resume()`` (the persistence stage is paused)."""

    def __init__(self) -> None:
        self.payloads: list[RawPayload] = []
        self.open = asyncio.Event()
        self.all_in = asyncio.Event()

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        await self.open.wait()
        self.payloads.append(payload)
        if len(self.payloads) == LINES:
            self.all_in.set()


async def settled(read: Any, *, quiet_s: float = 1.0, at_most_s: float = 30.0) -> int:
    """The value of ``read()`` once it stopped changing for ``quiet_s`` seconds (or after ``at_most_s``)."""
    last = -1
    for _ in range(int(at_most_s / quiet_s)):
        if (now := read()) == last:
            break
        last = now
        await asyncio.sleep(quiet_s)
    return int(read())


async def test_a_flood_while_the_pipeline_is_paused_stays_bounded() -> None:
    async with FloodServer() as server:
        sink = PausedSink()
        settings = {
            "host": "127.0.0.1",
            "port": server.port,
            "tls": False,
            "nick": "bridge",
            "read_queue": 256,
        }
        connector = IrcConnector(make_context("irc", settings=settings, sink=sink))
        await connector.connect()
        task = asyncio.create_task(connector.subscribe())
        try:
            written = await settled(lambda: server.written)
            assert written < LINES // 5, f"the client read {written} of {LINES} lines ahead of a paused sink"
            session = connector.session
            assert session is not None and session.reader.paused
            assert session.reader.most_queued < 256 + 2_000  # the mark, plus what one socket read held
            sink.open.set()  # persistence resumes: everything arrives, in order
            async with asyncio.timeout(120):
                await sink.all_in.wait()
            numbers = [int(p["line"].split(" :", 1)[1].split(" ", 1)[0]) for p in sink.payloads]
            assert numbers == list(range(LINES))
            assert session.reader.most_queued < 256 + 2_000
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await connector.disconnect()
