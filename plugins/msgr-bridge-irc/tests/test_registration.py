"""Registration and IRCv3 capability negotiation, read from the session's own record of the exchange.

Nothing here measures time. That the client never waits for a CAP reply shows two ways: in the order of
lines (NICK and USER go out right behind ``CAP LS``, before any server line, and negotiation ends on a
server line: CAP ACK, 421 or 001), and in that registration completes while the event loop's clock stands
still (``frozen_clock``), so no sleep or timeout can have been a step of it: a client that waited for a
CAP reply on a timer would never finish (pytest-timeout then fails the test). Servers without CAP are
wire-level fakes on 127.0.0.1, since ngIRCd answers CAP; the CAP path runs against the real ngIRCd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from msgr_bridge_irc.client import IrcSession
from msgr_bridge_irc.config import IrcSettings

from msgr_bridge.testing.ngircd import NgircdServer

pytestmark = pytest.mark.timeout(30)  # a client that waits on the frozen clock hangs: fail it sooner


def sent(log: list[str]) -> list[str]:
    return [line[2:] for line in log if line.startswith("> ")]


def verb(line: str) -> str:
    return line.split(" ", 3)[2]  # "< :server CMD ..." -> CMD


class NoCapServer:
    """An RFC 1459-era server: no CAP. ``answer_cap`` sends 421 ERR_UNKNOWNCOMMAND to it (what most
    such servers do), else CAP is ignored silently; 001 and the MOTD end follow USER at once."""

    def __init__(self, *, answer_cap: bool) -> None:
        self.answer_cap = answer_cap
        self.received: list[str] = []
        self.server: asyncio.Server | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nick = "*"
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            self.received.append(line)
            cmd, _, rest = line.partition(" ")
            out: list[str] = []
            if cmd == "CAP" and self.answer_cap:
                out.append(f":old.test 421 {nick} CAP :Unknown command")
            elif cmd == "NICK":
                nick = rest
            elif cmd == "USER":
                out += [
                    f":old.test 001 {nick} :Welcome {nick}!u@127.0.0.1",
                    f":old.test 005 {nick} CASEMAPPING=ascii CHANTYPES=# :are supported",
                    f":old.test 422 {nick} :MOTD File is missing",
                ]
            elif cmd == "QUIT":
                break
            for reply in out:
                writer.write(reply.encode() + b"\r\n")
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def no_cap_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[NoCapServer, int]]:
    fake = NoCapServer(answer_cap=request.param)
    async with fake as port:
        yield fake, port


@pytest.fixture
async def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Stop the running loop's clock: socket I/O goes on, but no timer (sleep, timeout) ever fires."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    monkeypatch.setattr(loop, "time", lambda: now)
    yield
    monkeypatch.undo()


def session_for(port: int, nick: str, *, server_password: str | None = None) -> IrcSession:
    settings = IrcSettings(host="127.0.0.1", port=port, tls=False, nick=nick)
    return IrcSession(settings, server_password=server_password, password=None)


@pytest.mark.parametrize("no_cap_server", [True, False], ids=["answers-421", "ignores-cap"], indirect=True)
async def test_server_without_cap_registers_without_waiting_for_a_cap_reply(
    no_cap_server: tuple[NoCapServer, int], frozen_clock: None
) -> None:
    fake, port = no_cap_server
    session = session_for(port, "oldie")
    try:
        await session.open()
    finally:
        await session.close()
    log = session.registration_log
    # The whole registration went out before the first server line: nothing waited for a CAP reply.
    assert log[:3] == ["> CAP LS 302", "> NICK oldie", "> USER oldie 0 * :oldie"]
    received = [verb(line) for line in log if line.startswith("< ")]
    assert received == (["421"] if fake.answer_cap else []) + ["001", "005", "422"]
    # No capability talk after the server showed it has none, and the client sent nothing more.
    assert sent(log) == ["CAP LS 302", "NICK oldie", "USER oldie 0 * :oldie"]
    assert session.cap_state == "unsupported"
    assert session.caps == set()
    assert session.isupport["CASEMAPPING"] == "ascii"
    assert fake.received[:3] == sent(log)


async def test_ngircd_negotiates_caps_with_registration_sent_up_front(
    ngircd: NgircdServer, uniq: Callable[[str], str], frozen_clock: None
) -> None:
    nick = uniq("capper")
    assert ngircd.password is not None  # the session-wide server has one: PASS is part of the burst
    session = session_for(ngircd.port, nick, server_password=ngircd.password)
    try:
        await session.open()
    finally:
        await session.close()
    log = session.registration_log
    first_reply = next(i for i, line in enumerate(log) if line.startswith("< "))
    assert log[:first_reply] == [
        "> CAP LS 302",
        "> PASS <redacted>",
        f"> NICK {nick}",
        f"> USER {nick} 0 * :{nick}",
    ]
    assert ngircd.password not in "\n".join(log)
    # ngIRCd holds registration until CAP END, and answers it at once with 001.
    cap_end = log.index("> CAP END")
    assert verb(log[cap_end - 1]) == "CAP" and " ACK " in log[cap_end - 1]
    assert verb(log[cap_end + 1]) == "001"
    assert verb(log[-1]) in ("376", "422")
    assert session.cap_state == "done"
    assert "multi-prefix" in session.caps


async def test_lines_reach_the_reader_as_the_socket_delivers_them_in_order(
    ngircd: NgircdServer, uniq: Callable[[str], str]
) -> None:
    """Once connected, a line is queued for the connector as bottom's protocol receives it, not in a
    task of its own per line (a fixed cost per message); fails with bottom's own dispatch."""
    session = session_for(ngircd.port, uniq("direct"), server_password=ngircd.password)
    try:
        await session.open()
        protocol = session.client._protocol
        assert protocol is not None
        queued = session.reader.queued
        protocol.data_received(b":a!u@h PRIVMSG #c :one\r\n:a!u@h PRIVMSG #c :two\r\n:a!u@h PRIV")
        assert session.reader.queued == queued + 2  # no await in between: nothing else ran
        protocol.data_received(b"MSG #c :three\r\n")
        lines = [await session.next(5) for _ in range(queued + 3)][queued:]
        assert [item.line.params[-1] for item in lines if item is not None] == ["one", "two", "three"]
    finally:
        await session.close()
