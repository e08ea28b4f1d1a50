"""The IRC connector: adapts ``IrcSession`` to the connector contract.

``connect()`` logs in and (re)joins the configured channels plus those it was in before; ``subscribe()``
runs the session's bounded reader (``sdk.reader``) and pushes every PRIVMSG, NOTICE, JOIN, PART, QUIT, KICK
and NICK as a raw payload (``convert.py``), answers PING, and raises ``TransientError`` when the link drops
or the server stays silent for two ping intervals. IRC keeps no history (ngIRCd offers no
``chathistory``): ``sync_state`` returns the channels and their members with ``complete=False``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from msgr_bridge import (
    BaseConnector,
    Capabilities,
    Contact,
    Conversation,
    NotSupported,
    OutboundMessage,
    PermanentError,
    SendResult,
    SyncSnapshot,
    TransientError,
)
from msgr_bridge.schema import ConversationKind
from msgr_bridge.sdk.settings import settings_of
from msgr_bridge.sdk.text import split_text

from . import DESCRIPTION
from .client import JOIN_ERRORS, IrcSession, Received
from .config import SECRET_PASSWORD, SECRET_SERVER_PASSWORD, IrcSettings, account_capabilities
from .convert import NETWORK, PAYLOAD_VERSION, is_channel, synth_id, text_budget

PUSHED = frozenset({"PRIVMSG", "NOTICE", "JOIN", "PART", "QUIT", "KICK", "NICK"})
JOINED = "joined"
"""``ctx.state`` map of the channels we are in (case-folded name -> name), rejoined on the next connect."""
MAX_JOINED = 1_000
LEGACY_CHANNELS = "channels"
"""Where older versions kept the same as one list (read once, then moved into the map)."""


class IrcConnector(BaseConnector, description=DESCRIPTION):
    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.settings = settings_of(ctx, IrcSettings)
        self.joined = ctx.state.map(JOINED, max_entries=MAX_JOINED)
        self.account_capabilities = account_capabilities(self.settings)
        """At this account's ``flood_rate``/``flood_burst``: the core's outbound limiter follows them."""
        self.session: IrcSession | None = None
        self._backlog: list[Received] = []
        self._stopped = False
        """Set by ``disconnect()`` (cleared by ``connect()``): a ``subscribe()`` that starts after it ends at
        once, as the contract asks, instead of finding no session."""

    def conversation_capabilities(self, conversation_id: str) -> Capabilities:
        return self.account_capabilities

    # --- lifecycle ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.session is not None:
            await self.disconnect()
        self._stopped = False
        session = IrcSession(
            self.settings,
            server_password=await self.ctx.secrets.get_optional(SECRET_SERVER_PASSWORD),
            password=await self.ctx.secrets.get_optional(SECRET_PASSWORD),
        )
        self.session = session
        try:
            self._backlog = await session.open()
            await self._join_all(session)
        except BaseException:
            await session.close()
            self.session = None
            raise
        self.log.info("irc.connected", nick=session.nick, caps=sorted(session.caps), cap=session.cap_state)

    async def _join_all(self, session: IrcSession) -> None:
        """Join configured and previously joined channels; wait for each NAMES list or refusal."""
        legacy = await self.ctx.state.get(LEGACY_CHANNELS, [])
        remembered = [*(legacy if isinstance(legacy, list) else []), *(await self.joined.list()).values()]
        wanted: dict[str, str] = {}
        for name in [*self.settings.channels, *remembered]:
            if isinstance(name, str) and is_channel(name, session.chantypes):
                wanted.setdefault(session.fold(name), name)
        pending = set(wanted)
        for start in range(0, len(wanted), 10):
            await session.send_paced("JOIN " + ",".join(list(wanted.values())[start : start + 10]))
        backlog, self._backlog = self._backlog, []
        for item in backlog:
            await self._handle(item)
        try:
            while pending:
                received = await session.next(self.settings.timeout)
                if received is None:
                    raise TransientError(f"IRC server {self.settings.host} closed the link while joining")
                await self._handle(received)
                line = received.line
                if line.command == "366" or line.command in JOIN_ERRORS:
                    pending.discard(session.fold(line.param(1)))
                    if line.command != "366":
                        self.log.warning("irc.join_refused", channel=line.param(1), reason=line.params[-1])
        except TimeoutError:
            self.log.warning("irc.join_timeout", channels=sorted(pending))
        # what the map holds is what we are in now: refused or vanished channels are forgotten
        in_now = {key: chan.name for key, chan in session.channels.items()}
        for key in (await self.joined.list()).keys() - in_now.keys():
            await self.joined.delete(key)
        for key, name in in_now.items():
            await self.joined.set(key, name)
        if legacy:
            await self.ctx.state.delete(LEGACY_CHANNELS)

    async def subscribe(self) -> None:
        if self._stopped:
            return
        session = self.session
        if session is None:
            raise TransientError("IRC subscribe() called before connect()")
        backlog, self._backlog = self._backlog, []
        for item in backlog:
            await self._handle(item)
        silent = 0

        async def handle(received: Received) -> None:
            nonlocal silent
            silent = 0
            await self._handle(received)

        async def keepalive() -> None:
            nonlocal silent
            silent += 1
            if silent >= 2:
                raise TransientError(f"IRC server {self.settings.host} stopped answering")
            await session.send_raw(f"PING :msgr-bridge-{int(datetime.now(UTC).timestamp())}")

        await session.reader.run(handle, idle_s=self.settings.ping_interval, on_idle=keepalive)

    async def _handle(self, item: Received) -> None:
        session = self.session
        assert session is not None
        line = item.line
        if line.command == "PING":
            await session.send_raw(f"PONG :{line.param(0)}")
            session.pings_answered += 1
            return
        session.observe_reply(line)
        self_nick = session.nick
        shared = session.observe(line)
        me = session.fold(self_nick)
        acted = line.command in ("JOIN", "PART", "KICK") and session.fold(line.nick) == me
        kicked = line.command == "KICK" and session.fold(line.param(1)) == me
        if acted or kicked:
            channel = line.param(0)
            if line.command == "JOIN":
                await self.joined.set(session.fold(channel), channel)
            else:
                await self.joined.delete(session.fold(channel))
        if line.command not in PUSHED:
            return
        payload: dict[str, Any] = {
            "v": PAYLOAD_VERSION,
            "server": self.settings.host,
            "self_nick": self_nick,
            "received_at": item.received_at,
            "line": item.raw,
            "casemapping": session.casemapping,
            "chantypes": session.chantypes,
        }
        if line.command in ("QUIT", "NICK"):
            payload["channels"] = shared
        await self.ctx.sink.push(payload)

    async def disconnect(self) -> None:
        self._stopped = True
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    # --- outbound -----------------------------------------------------------------------------------

    def _target(self, conversation_id: str) -> str:
        server, sep, target = conversation_id.partition("/")
        if not sep or not target or server.lower() != self.settings.host.lower() or " " in target:
            raise PermanentError(
                f"{conversation_id!r} is not a conversation on {self.settings.host}",
                hint="IRC conversation ids look like '<server>/#channel' or '<server>/<nick>'",
            )
        return target

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        """Send text as one IRC PRIVMSG per line; long lines are split to fit the 512-byte limit.

        The lines are paced by flood control (``SendPacer``): a message of any length goes out. One call
        paces for at most ``max_send_wait`` seconds; a longer message raises ``RateLimited`` after the
        lines that fit, and the delivery worker's retry (same ``txn_id``) resumes after them. A ``PING``
        round trip then collects the server's refusal of the target (403, 404, ...): ``PermanentError``
        with the server's reason. The first line's id is ``remote_id``; the others are ``extra_parts``.
        """
        if message.attachments:
            raise NotSupported("attachments", network=self.network)
        session = self.session
        if session is None or session.client.is_closing():
            raise TransientError(f"not connected to IRC server {self.settings.host}")
        target = self._target(conversation_id)
        budget = text_budget(session.nick, session.hostmask_room, "PRIVMSG", target)
        chunks = split_text(message.text.replace("\x00", ""), budget, unit="bytes", lines_apart=True)
        if not chunks:
            raise PermanentError("an IRC message needs some text", hint="empty messages cannot be sent")
        sent_at = datetime.now(UTC)
        stamp = sent_at.isoformat()
        label = "labeled-response" in session.caps and "echo-message" in session.caps

        async def put(index: int, chunk: str) -> str:
            tags = f"@label={message.txn_id} " if label and index == 0 else ""
            await session.send_raw(f"{tags}PRIVMSG {target} :{chunk}")
            part_stamp = stamp if index == 0 else f"{stamp}#{index}"
            return synth_id(part_stamp, session.fold(session.nick), session.fold(target), chunk)

        with session.watching(target) as refusals:
            ids = await session.pacer.send_parts(message.txn_id, chunks, put)
            if not await session.round_trip(self.settings.timeout):
                self.log.warning("irc.send_unconfirmed", target=target, lines=len(chunks))
        if refusals:
            raise PermanentError(
                f"{self.settings.host} refused the message to {target}: {refusals[0]}",
                hint="check that the channel or nick exists and that the account may speak there",
            )
        return SendResult(remote_id=ids[0], extra_parts=tuple(ids[1:]), timestamp=sent_at)

    # --- state sync ---------------------------------------------------------------------------------

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        """Channels we are in with their members; IRC has no history to catch up on."""
        session = self.session
        if session is None:
            return SyncSnapshot(cursor=cursor, complete=False)
        host, account_id = self.settings.host.lower(), self.ctx.account.id
        me = session.fold(session.nick)
        conversations = tuple(
            Conversation(
                network=NETWORK, account_id=account_id, remote_id=f"{host}/{key}", name=chan.name,
                type=ConversationKind.GROUP, topic=chan.topic,
                members=tuple(f"{host}/{nick}" for nick in sorted(chan.members)),
            )
            for key, chan in session.channels.items()
        )  # fmt: skip
        contacts = {
            folded: Contact(
                network=NETWORK, account_id=account_id, remote_id=f"{host}/{folded}", display_name=nick,
                is_self=folded == me,
            )
            for chan in session.channels.values()
            for folded, nick in chan.members.items()
        }  # fmt: skip
        return SyncSnapshot(
            contacts=tuple(contacts.values()), conversations=conversations, cursor=cursor, complete=False
        )
