"""Logging in to an IRC server, and linking an account (logging in once).

``Login``: IRCv3 capability negotiation, registration (NICK/USER, a taken nick gets "_"), SASL PLAIN when
offered, NickServ ``IDENTIFY`` otherwise. Every step is driven by a server line, never by a timer;
``IrcSession.open()`` runs it once the socket is connected.

``IrcLinkFlow``: the settings form plus the passwords, verified by logging in. The test connection sends
``QUIT`` and waits until the server closed the link before the flow ends, so the account's real connection
finds its nick free (a server that still held it would give the real connection ``nick_``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from msgr_bridge import FormField, LinkResult, LinkStep
from msgr_bridge.errors import AuthenticationFailed, PermanentError, TransientError
from msgr_bridge.sdk.linking import SettingsLinkFlow

from .config import CONNECTION_FIELDS, SECRET_PASSWORD, SECRET_SERVER_PASSWORD, IrcSettings
from .convert import IrcLine

if TYPE_CHECKING:
    from .client import IrcSession, Received

WANTED_CAPS = ("server-time", "message-tags", "echo-message", "labeled-response", "batch", "multi-prefix")
"""IRCv3 capabilities requested when offered (plus ``sasl`` when a password is set). ``chathistory`` is
recorded when offered but not fetched yet, so the connector declares no history catch-up."""

_NICKSERV_OK = ("you are now identified", "password accepted", "you are now logged in", "now logged in as")
_NICKSERV_BAD = ("invalid password", "incorrect password", "password incorrect", "authentication failed",
                 "is not registered", "isn't registered", "not a registered")  # fmt: skip


class Login:
    """One login on ``session``'s fresh connection; ``run()`` returns the lines that arrived meanwhile and
    are not part of it (the connector handles them like any other line)."""

    def __init__(self, session: IrcSession, *, server_password: str | None, password: str | None) -> None:
        self.session = session
        self.settings = session.settings
        self.server_password = server_password
        self.password = password

    async def run(self) -> list[Received]:
        # IRCv3 capability negotiation: send CAP LS and the registration at once, without waiting for a
        # CAP reply. A server with CAP holds registration until CAP END; one without answers 421 or just
        # registers us (001), and either line ends negotiation as "unsupported" (see _register).
        host = self.settings.host
        await self.session.send_raw("CAP LS 302")
        if self.server_password:
            await self.session.send_raw(f"PASS :{self.server_password}")
        await self.session.send_raw(f"NICK {self.session.nick}")
        await self.session.send_raw(f"USER {self.settings.nick} 0 * :{self.settings.realname}")
        try:
            async with asyncio.timeout(self.settings.timeout):
                backlog = await self._register()
                if self.password and not self.session.sasl_done and self.settings.nickserv == "auto":
                    backlog += await self._nickserv_identify(self.password)
        except TimeoutError as exc:
            raise TransientError(f"IRC server {host} did not finish registration in time") from exc
        return backlog

    async def _register(self) -> list[Received]:
        backlog: list[Received] = []
        bad_password = False
        nick_tries = 0
        while True:
            item = await self.session.next()
            if item is None:
                if bad_password:
                    raise AuthenticationFailed(f"{self.settings.host} refused the server password")
                raise TransientError(f"IRC server {self.settings.host} closed the connection during login")
            line = item.line
            cmd = line.command
            if cmd == "PING":
                await self.session.send_raw(f"PONG :{line.param(0)}")
            elif cmd == "CAP":
                await self._on_cap(line)
            elif cmd == "AUTHENTICATE" and line.param(0) == "+":
                await self._send_sasl_plain()
            elif cmd == "903":
                self.session.sasl_done = True
                await self._cap_end()
            elif cmd in ("902", "904", "905", "906"):
                raise AuthenticationFailed(
                    f"SASL login to {self.settings.host} failed: {line.params[-1] if line.params else cmd}",
                    hint="check the account password (secret 'password') and the nick/account name",
                )
            elif cmd == "464":
                bad_password = True
            elif cmd == "ERROR":
                reason = line.param(0)
                if bad_password or "password" in reason.lower() or "access denied" in reason.lower():
                    raise AuthenticationFailed(
                        f"{self.settings.host} refused the login: {reason}",
                        hint="check the server password (secret 'server_password')",
                    )
                raise TransientError(f"IRC server {self.settings.host} closed the link: {reason}")
            elif cmd in ("433", "436") and nick_tries < 3:
                nick_tries += 1
                self.session.nick = f"{self.session.nick}_"
                await self.session.send_raw(f"NICK {self.session.nick}")
            elif cmd in ("432", "433", "436"):
                raise PermanentError(
                    f"the nick {self.settings.nick!r} is not available on {self.settings.host}"
                )
            elif cmd == "421" and line.param(1).upper() == "CAP":
                self.session.cap_state = "unsupported"  # no IRCv3 negotiation: NICK/USER already went out
            elif cmd == "001":
                if self.session.cap_state == "pending":
                    self.session.cap_state = "unsupported"  # registered without ever answering CAP LS
                self.session.nick = line.param(0) or self.session.nick
                self.session.learn_hostmask(line.param(1).rsplit(" ", 1)[-1])
            elif cmd == "005":
                for token in line.params[1:-1]:
                    key, _, value = token.partition("=")
                    self.session.isupport[key.upper()] = value
            elif cmd in ("376", "422"):
                return backlog
            elif not cmd.isdigit():
                backlog.append(item)

    async def _on_cap(self, line: IrcLine) -> None:
        sub = line.param(1).upper()
        if self.session.cap_state == "pending":
            self.session.cap_state = "negotiating"
        if sub == "LS":
            more = line.param(2) == "*"
            for token in line.params[-1].split():
                name, _, value = token.partition("=")
                self.session.offered_caps[name] = value
            if more:
                return
            wanted = [c for c in WANTED_CAPS if c in self.session.offered_caps]
            if self.password and "sasl" in self.session.offered_caps:
                mechanisms = self.session.offered_caps["sasl"]
                if not mechanisms or "PLAIN" in mechanisms.upper().split(","):
                    wanted.append("sasl")
            if wanted:
                await self.session.send_raw(f"CAP REQ :{' '.join(wanted)}")
            else:
                await self._cap_end()
        elif sub == "ACK":
            self.session.caps.update(c.lstrip("-~=") for c in line.params[-1].split())
            if "sasl" in self.session.caps and self.password and not self.session.sasl_done:
                await self.session.send_raw("AUTHENTICATE PLAIN")
            else:
                await self._cap_end()
        elif sub == "NAK":
            await self._cap_end()

    async def _cap_end(self) -> None:
        self.session.cap_state = "done"
        await self.session.send_raw("CAP END")

    async def _send_sasl_plain(self) -> None:
        assert self.password is not None
        blob = f"{self.settings.nick}\0{self.settings.nick}\0{self.password}".encode()
        encoded = base64.b64encode(blob).decode()
        chunks = [encoded[i : i + 400] for i in range(0, len(encoded), 400)] or ["+"]
        for chunk in chunks:
            await self.session.send_raw(f"AUTHENTICATE {chunk}")
        if len(chunks[-1]) == 400:
            await self.session.send_raw("AUTHENTICATE +")

    async def _nickserv_identify(self, password: str) -> list[Received]:
        """Identify to NickServ and wait for its verdict (a NOTICE), or for 401 when there is none."""
        backlog: list[Received] = []
        await self.session.send_raw(f"PRIVMSG NickServ :IDENTIFY {self.settings.nick} {password}")
        while True:
            item = await self.session.next()
            if item is None:
                raise TransientError(f"IRC server {self.settings.host} closed the connection during login")
            line = item.line
            if line.command == "401" and self.session.fold(line.param(1)) == "nickserv":
                raise AuthenticationFailed(
                    f"{self.settings.host} offers neither SASL nor a NickServ to log in with",
                    hint="remove the account password, or set nickserv = 'off' to connect without logging in",
                )
            if line.command == "NOTICE" and self.session.fold(line.nick) == "nickserv":
                text = line.param(1).lower()
                if any(p in text for p in _NICKSERV_BAD):
                    raise AuthenticationFailed(
                        f"NickServ on {self.settings.host} refused the login: {line.param(1)}",
                        hint="check the account password (secret 'password')",
                    )
                if any(p in text for p in _NICKSERV_OK):
                    return backlog
            elif line.command == "PING":
                await self.session.send_raw(f"PONG :{line.param(0)}")
            elif not line.command.isdigit():
                backlog.append(item)


class IrcLinkFlow(SettingsLinkFlow):
    settings_model = IrcSettings
    network = "irc"
    prompt = "Connect to an IRC server"
    secret_fields = (
        FormField(name=SECRET_SERVER_PASSWORD, label="Server password", secret=True, required=False),
        FormField(
            name=SECRET_PASSWORD, label="Account password (SASL or NickServ)", secret=True, required=False
        ),
    )

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        super().__init__(defaults)
        self._answered: set[str] = set()

    async def submit(self, answers: Mapping[str, Any]) -> LinkStep | LinkResult:
        self._answered = {k for k, v in answers.items() if v not in (None, "")}
        return await super().submit(answers)

    async def verify(
        self, settings: IrcSettings, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        from .client import IrcSession

        session = IrcSession(
            settings,
            server_password=secrets.get(SECRET_SERVER_PASSWORD),
            password=secrets.get(SECRET_PASSWORD),
        )
        self.probe(lambda: session.close("msgr-bridge link check", wait_s=min(settings.timeout, 10.0)))
        await session.open()
        # the connection's settings, and what the person chose; the rest follows [networks.irc]
        stored = {*CONNECTION_FIELDS, *(self._answered & set(IrcSettings.model_fields))}
        return LinkResult(
            remote_user_id=f"{settings.host.lower()}/{session.fold(settings.nick)}",
            display_name=settings.nick,
            settings=settings.model_dump(mode="json", include=stored),
            secrets=dict(secrets),
        )
