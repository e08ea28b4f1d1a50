"""The Discord connector: a bot account's gateway session and REST calls, adapted to the connector contract.

Receiving: ``connect()`` logs in over REST (``GET /users/@me``), then opens the gateway, RESUMEing the session
kept in ``ctx.state`` when there is one. ``subscribe()`` pushes every message, edit, delete, reaction, typing
and member dispatch to ``ctx.sink`` with an ``ack``; the sequence number saved for the next RESUME only moves
past a dispatch once the core has acknowledged it and everything before it, so a crash replays rather than
loses. When Discord refuses the RESUME (or after a clean stop, which ends the session), ``sync_state`` pages
each channel's history after the last message the core acknowledged there (``after=``), and the core's
dedupe drops whatever it already had. On linking, ``backfill_messages`` per channel are imported.

Sending is in ``outbound.py``, catch-up in ``catchup.py``; the wire in ``client.py`` (REST) and
``gateway.py``; conversion in ``convert.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from msgr_bridge import Account, Capabilities, TransientError
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload
from msgr_bridge.schema import Event

from .catchup import STATE_KEY, Catchup
from .client import DiscordRest
from .config import CAPABILITIES, SECRET_TOKEN, DiscordSettings
from .convert import NETWORK, convert
from .directory import CHANNEL_STATE_KEY
from .gateway import GatewayConnection, Resume

PUSHED = frozenset(
    {
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "MESSAGE_DELETE_BULK",
        "MESSAGE_REACTION_ADD",
        "MESSAGE_REACTION_REMOVE",
        "TYPING_START",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_REMOVE",
    }
)
SAVE_EVERY_S = 1.0


class DiscordConnector(Catchup):
    network: ClassVar[str] = NETWORK
    display_name: ClassVar[str] = "Discord"
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    settings_model: ClassVar[type[DiscordSettings]] = DiscordSettings
    """The core validates ``[networks.discord]`` and what a link stores against it."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.settings = DiscordSettings.from_mapping(ctx.settings)
        self.gateway: GatewayConnection | None = None
        self._inflight: dict[int, bool] = {}
        self._watermark = 0
        self._saved_at = 0.0

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        from .link import DiscordLinkFlow

        return DiscordLinkFlow(settings)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return convert(payload, account)

    def conversation_capabilities(self, conversation_id: str) -> Capabilities:
        """DMs have no threads on Discord."""
        if self.channels.get(conversation_id, {}).get("type") in (1, 3):
            return self.capabilities.model_copy(update={"threads": False})
        return self.capabilities

    # --- lifecycle ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.rest is not None or self.gateway is not None:
            await self.disconnect()
        self._stopped = False
        token = await self.ctx.secrets.get(SECRET_TOKEN)
        rest = DiscordRest(self.settings.api_base, token, timeout_s=self.settings.timeout_s)
        try:
            self.self_id = str((await rest.me())["id"])
            url = self.settings.gateway_url or await rest.gateway_url()
            saved = await self.ctx.state.get(STATE_KEY) or {}
            self._linked_before = bool(saved)
            self._last_seen = dict(saved.get("last_seen", {}))
            self.own_webhooks = set(saved.get("webhooks", []))
            self.load_channels(await self.ctx.state.get(CHANNEL_STATE_KEY))
            resume = None
            if saved.get("session_id") and isinstance(saved.get("seq"), int):
                resume = Resume(saved["session_id"], saved["seq"], saved.get("resume_url") or url)
            gateway = GatewayConnection(
                url, token, self.settings.intents, self.settings.compress, self.settings.timeout_s
            )
            await gateway.open(resume)
        except BaseException:
            await rest.close()
            raise
        self.rest, self.gateway = rest, gateway
        self._fresh = not gateway.resumed
        self._inflight.clear()
        first = gateway.backlog[0].get("s") if gateway.backlog else None
        self._watermark = (
            resume.seq if gateway.resumed and resume else (first - 1 if first else gateway.seq or 0)
        )
        for frame in gateway.backlog:
            self.learn(frame.get("t"), frame.get("d") or {})
        await self._save(force=True)
        self.log.info("discord.connected", resumed=gateway.resumed, channels=len(self.channels))

    def stopping(self) -> bool:
        return self._stopped

    async def disconnect(self) -> None:
        """A clean stop ends the gateway session (close 1000): the next start resyncs from history."""
        self._stopped = True
        gateway, self.gateway = self.gateway, None
        rest, self.rest = self.rest, None
        if gateway is not None:
            await gateway.close(1000)
            await self._save(force=True, ended=True)
        if rest is not None:
            await rest.close()

    async def subscribe(self) -> None:
        if self._stopped:
            return
        gateway = self.gateway
        if gateway is None:
            raise TransientError("Discord subscribe() called before connect()")
        try:
            while not self.stopping():
                frame = await gateway.next()
                if self.stopping():
                    return
                await self._handle(frame)
        except TransientError:
            if self.stopping():
                return
            # Lost, not stopped: close with 4000 so Discord keeps the session for a RESUME.
            await self._save(force=True)
            self.gateway = None
            await gateway.close(4000)
            raise

    # --- receiving ---------------------------------------------------------------------------------

    async def _handle(self, frame: Mapping[str, Any]) -> None:
        event, d, seq = frame.get("t"), frame.get("d") or {}, frame.get("s")
        if isinstance(seq, int):
            self._inflight[seq] = False
        self.learn(event, d)
        if event not in PUSHED or not isinstance(event, str):
            await self._done(seq)
            return
        payload = await self.wrap_stored(event, d)
        if event == "MESSAGE_CREATE":
            txn = await self.txn_of(d)
            if txn is not None:
                payload["txn_id"] = txn
        channel_id, message_id = str(d.get("channel_id")), d.get("id")

        async def ack() -> None:
            last = int(self._last_seen.get(channel_id, "0"))
            newer = isinstance(message_id, str) and int(message_id) > last
            if event == "MESSAGE_CREATE" and newer and channel_id in self.channels:
                self._last_seen[channel_id] = str(message_id)
            await self._done(seq)

        await self.ctx.sink.push(payload, ack=ack)

    async def _done(self, seq: Any) -> None:
        if isinstance(seq, int) and seq in self._inflight:
            self._inflight[seq] = True
        while self._inflight:
            first = next(iter(self._inflight))
            if not self._inflight[first]:
                break
            del self._inflight[first]
            self._watermark = max(self._watermark, first)
        await self._save()

    async def _save(self, *, force: bool = False, ended: bool = False) -> None:
        await self.save_channels()  # only when a channel came or went
        now = time.monotonic()
        if not force and now - self._saved_at < SAVE_EVERY_S:
            return
        self._saved_at = now
        gateway = self.gateway
        state: dict[str, Any] = {"last_seen": self._last_seen, "webhooks": sorted(self.own_webhooks)}
        if gateway is not None and not ended and gateway.session_id:
            state |= {
                "session_id": gateway.session_id,
                "seq": self._watermark,
                "resume_url": gateway.resume_url,
            }
        await self.ctx.state.set(STATE_KEY, state)
