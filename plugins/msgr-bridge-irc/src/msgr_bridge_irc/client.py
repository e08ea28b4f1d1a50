"""The IRC session: bottom 3 as transport, plus login (``login.py``), PING and membership tracking; it
knows nothing of the sink.

bottom knows no IRCv3 tags, so the session replaces its message handlers with one that feeds every raw line,
in arrival order, to the SDK's bounded ``InboundReader`` (which stops reading the socket while the sink is
behind) and parses lines itself (``convert.parse_line``). Sends go through the SDK's ``SendPacer``. A
PRIVMSG has no acknowledgement, so a send ends with a ``PING`` round trip: a refusal of its target before
the ``PONG`` (401, 403, 404, ...) is collected by ``watching(target)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import bottom

from msgr_bridge.errors import PermanentError, TransientError
from msgr_bridge.sdk.pacing import SendPacer
from msgr_bridge.sdk.reader import InboundReader

from .config import IrcSettings
from .convert import DEFAULT_HOSTMASK_ROOM, IrcLine, irc_lower, parse_line
from .login import Login

JOIN_ERRORS = frozenset({"403", "405", "437", "471", "473", "474", "475", "476", "477"})
SEND_REFUSALS = frozenset({"401", "403", "404", "406", "477", "486", "489", "492", "531"})
"""Numerics that refuse a PRIVMSG to their second parameter: no such nick (401), no such channel (403),
cannot send to channel (404: moderated, banned, not joined to a +n channel), a registered nick needed (477,
486), secure connection needed (489), and the like."""
_CHECKS = itertools.count(1)


def _redact(line: str) -> str:
    verb = line.split(" ", 1)[0].upper()
    if verb in ("PASS", "AUTHENTICATE") and line.upper() not in ("AUTHENTICATE PLAIN", "AUTHENTICATE +"):
        return f"{verb} <redacted>"
    if verb == "PRIVMSG" and "IDENTIFY" in line.upper():
        return line.split(":", 1)[0] + ":IDENTIFY <redacted>"
    return line


@dataclass(slots=True)
class Channel:
    name: str
    members: dict[str, str] = field(default_factory=dict)
    """Case-folded nick -> nick as last seen."""
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Received:
    raw: str
    line: IrcLine
    received_at: str


class IrcSession:
    """One connection to one server for one account."""

    def __init__(self, settings: IrcSettings, *, server_password: str | None, password: str | None) -> None:
        self.settings = settings
        self._server_password = server_password
        self._password = password
        self.nick = settings.nick
        self.hostmask_room = DEFAULT_HOSTMASK_ROOM
        self.caps: set[str] = set()
        self.offered_caps: dict[str, str] = {}
        self.isupport: dict[str, str] = {}
        self.channels: dict[str, Channel] = {}
        self.sasl_done = False
        self.cap_state = "pending"
        """IRCv3 negotiation: "pending" until the server answers ``CAP LS``; "negotiating"; "done" once we
        sent ``CAP END``; "unsupported" when the server answered 421 or went on to 001 without a CAP reply.
        Every change is driven by a server line, never by a timer: a server without CAP costs no wait."""
        self.registration_log: list[str] = []
        """Lines exchanged during ``open()`` (``> sent``, ``< received``; passwords redacted), so a failed
        or slow login can be read afterwards."""
        self._logging = False
        self.pings_answered = 0
        """How many server PINGs we answered (bottom does not answer them itself)."""
        self.pacer = SendPacer(settings.flood_rate, settings.flood_burst, max_wait=settings.max_send_wait)
        self.reader: InboundReader[Received] = InboundReader(
            high_water=settings.read_queue, transport=self._transport
        )
        self._watches: dict[str, list[list[str]]] = {}
        self._pongs: dict[str, asyncio.Future[None]] = {}
        self.client = bottom.Client(settings.host, settings.port, ssl=self._ssl_context())
        self.client.message_handlers.clear()
        self.client.message_handlers.append(self._on_raw)
        self.client.on("client_disconnect", self._on_disconnect)

    # --- transport --------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self.settings.tls:
            return False
        context = ssl.create_default_context()
        if not self.settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _on_raw(self, next_handler: Any, client: Any, message: bytes) -> None:
        """Lines bottom received before ``open`` took them over (``_take_lines``), each in a task."""
        self._on_line(message)

    def _take_lines(self) -> None:
        """Have bottom's protocol hand every further line straight to ``_on_line``: its own dispatch
        makes a task per line (``stack_process``), a fixed cost of every message. Order is kept: a line
        already dispatched runs its (synchronous) task before the loop reads the socket again."""
        protocol = getattr(self.client, "_protocol", None)  # bottom keeps its asyncio protocol there
        if protocol is not None:
            protocol.on_message = self._on_line

    def _on_line(self, message: bytes) -> None:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            text = message.decode("latin-1")  # legacy servers and clients
        if not text.strip():
            return
        try:
            line = parse_line(text)
        except ValueError:
            return
        self.reader.feed(Received(text, line, datetime.now(UTC).isoformat()))

    async def _on_disconnect(self, **kwargs: Any) -> None:
        self.reader.lost(f"lost the IRC connection to {self.settings.host}")

    def _transport(self) -> asyncio.BaseTransport | None:
        protocol = getattr(self.client, "_protocol", None)  # bottom keeps its asyncio protocol there
        return getattr(protocol, "transport", None)

    @property
    def casemapping(self) -> str:
        return self.isupport.get("CASEMAPPING", "rfc1459")

    @property
    def chantypes(self) -> str:
        return self.isupport.get("CHANTYPES", "#&")

    def fold(self, name: str) -> str:
        return irc_lower(name, self.casemapping)

    async def next(self, timeout: float | None = None) -> Received | None:
        """The next line, or ``None`` when the connection is gone. Raises ``TimeoutError``."""
        item = await self.reader.next(timeout)
        if self._logging and item is not None:
            self.registration_log.append("< " + item.raw.rstrip("\r\n"))
        return item

    async def send_raw(self, line: str) -> None:
        """Send one line now, outside flood control (registration, PONG)."""
        if self._logging:
            self.registration_log.append("> " + _redact(line))
        try:
            await self.client.send_message(line)
        except RuntimeError as exc:
            raise TransientError(f"IRC connection to {self.settings.host} is closed") from exc

    async def send_paced(self, line: str) -> None:
        """Send one line through flood control, so the server never throttles or drops us."""
        await self.pacer.one(lambda: self.send_raw(line))

    # --- refusals of what we send -------------------------------------------------------------------

    @contextlib.contextmanager
    def watching(self, target: str) -> Iterator[list[str]]:
        """Collect the server's refusals of sends to ``target`` (``"403 No such channel"``) meanwhile."""
        refusals: list[str] = []
        watchers = self._watches.setdefault(self.fold(target), [])
        watchers.append(refusals)
        try:
            yield refusals
        finally:
            watchers.remove(refusals)
            if not watchers:
                self._watches.pop(self.fold(target), None)

    async def round_trip(self, timeout: float) -> bool:
        """PING the server and wait for its PONG: every answer to what we sent before has arrived then
        (the reader's loop must be running). False when no PONG came within ``timeout``."""
        token = f"msgr-bridge-check-{next(_CHECKS)}"
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[token] = answered
        try:
            await self.send_raw(f"PING :{token}")  # outside flood control: not a message, and tiny
            async with asyncio.timeout(timeout):
                await answered
            return True
        except TimeoutError:
            return False
        finally:
            self._pongs.pop(token, None)

    def observe_reply(self, line: IrcLine) -> None:
        """Match a PONG to ``round_trip`` and a refusal numeric to ``watching``."""
        if line.command == "PONG" and line.params:
            answered = self._pongs.get(line.params[-1])
            if answered is not None and not answered.done():
                answered.set_result(None)
        elif line.command in SEND_REFUSALS and len(line.params) >= 2:
            for refusals in self._watches.get(self.fold(line.param(1)), ()):
                refusals.append(f"{line.command} {line.params[-1]}")

    async def close(self, message: str = "msgr-bridge disconnecting", *, wait_s: float = 0.0) -> None:
        """Send ``QUIT`` and drop the connection. With ``wait_s``, first wait (at most that long) until the
        server has closed the link: it has let the nick go then. Only when nothing else reads the session
        (a link check): the lines still queued are read and dropped meanwhile."""
        if wait_s <= 0:
            self.reader.stop()
        if not self.client.is_closing():
            with contextlib.suppress(RuntimeError):
                await self.client.send_message(f"QUIT :{message}")
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        while await self.reader.next() is not None:
                            pass
        self.reader.stop()
        if not self.client.is_closing():
            await self.client.disconnect()

    # --- registration -------------------------------------------------------------------------------

    async def open(self) -> list[Received]:
        """Connect, negotiate capabilities, register and log in. Returns lines that arrived meanwhile
        and are not part of registration (the connector handles them like any other line)."""
        host = self.settings.host
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self.client.connect()
            self._take_lines()
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(
                f"the TLS certificate of {host} was not accepted: {exc.verify_message}",
                hint="fix the server certificate, or set tls_verify = false for a self-signed one",
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise TransientError(f"cannot connect to IRC server {host}:{self.settings.port}: {exc}") from exc
        self._logging = True
        try:
            login = Login(self, server_password=self._server_password, password=self._password)
            return await login.run()
        finally:
            self._logging = False

    def learn_hostmask(self, prefix: str) -> None:
        if "!" in prefix and "@" in prefix:
            self.hostmask_room = len(prefix.encode()) - len(prefix.split("!", 1)[0].encode())

    # --- membership tracking ------------------------------------------------------------------------

    def observe(self, line: IrcLine) -> list[str]:
        """Update channel state for one line. For QUIT and NICK, returns the channels we shared with
        that nick *before* the change (the events apply to each of them)."""
        cmd, nick = line.command, self.fold(line.nick)
        if cmd == "JOIN":
            chan = self.channels.setdefault(self.fold(line.param(0)), Channel(line.param(0)))
            chan.members[nick] = line.nick
            if nick == self.fold(self.nick):
                self.learn_hostmask(line.prefix)
        elif cmd in ("PART", "KICK"):
            gone = nick if cmd == "PART" else self.fold(line.param(1))
            key = self.fold(line.param(0))
            if gone == self.fold(self.nick):
                self.channels.pop(key, None)
            elif key in self.channels:
                self.channels[key].members.pop(gone, None)
        elif cmd in ("QUIT", "NICK"):
            shared = [c.name for c in self.channels.values() if nick in c.members]
            for chan in self.channels.values():
                if nick in chan.members:
                    old = chan.members.pop(nick)
                    if cmd == "NICK":
                        chan.members[self.fold(line.param(0))] = line.param(0) or old
            if cmd == "NICK" and nick == self.fold(self.nick):
                self.nick = line.param(0)
            return shared
        elif cmd == "353":  # RPL_NAMREPLY: me = #chan :@alice +bob carol
            chan = self.channels.setdefault(self.fold(line.param(2)), Channel(line.param(2)))
            prefixes = self.isupport.get("PREFIX", "(ov)@+").partition(")")[2] or "@+"
            for entry in line.params[-1].split():
                name = entry.lstrip(prefixes).split("!", 1)[0]
                if name:
                    chan.members[self.fold(name)] = name
        elif cmd == "332" and self.fold(line.param(1)) in self.channels:
            self.channels[self.fold(line.param(1))].topic = line.param(2)
        elif cmd == "TOPIC" and self.fold(line.param(0)) in self.channels:
            self.channels[self.fold(line.param(0))].topic = line.param(1)
        return []
