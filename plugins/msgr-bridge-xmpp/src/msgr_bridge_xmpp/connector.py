"""The XMPP connector: one slixmpp client session per linked account, and its link flow.

``connect`` logs in (resuming the previous stream with XEP-0198 when the server still holds it, else a fresh
session: presence, carbons, rooms joined); ``sync_state`` returns the roster, the rooms and the messages
archived (XEP-0313) since the cursor; ``subscribe`` hands live stanzas to the sink in arrival order and
raises ``TransientError`` when the connection drops (slixmpp never reconnects by itself here). Rooms
(``muc.py``): occupants present at the join are the conversation's ``members``, later changes are pushed
as presence payloads. In rooms, replies, reactions, retractions and markers name the room's stanza-id,
mapped to and from our ``remote_id`` (``memory.py``). Moderations announced by a room become deletes
(``capture.py``); retractions and corrections count only from the original's author (``authorship.py``).

``XmppLinkFlow``: the JID, the password and the account's own settings (rooms, nick), checked by one login;
where to connect and the rest are operator-only (``[networks.xmpp]``). Secrets: ``password``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import InvalidJID
from slixmpp.stanza import Message as MessageStanza
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from msgr_bridge import BaseConnector, ConnectorContext, FormField, LinkResult, SyncSnapshot, TransientError
from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.errors import ConfigError, describe_error
from msgr_bridge.sdk.linking import SettingsLinkFlow
from msgr_bridge.sdk.reader import InboundReader
from msgr_bridge.sdk.settings import settings_of

from . import DESCRIPTION
from .authorship import unverified
from .capture import NS_CLIENT, capture, is_archive_result, unwrap_carbon
from .client import fetch_history, login, make_client, parse_cursor, roster_snapshot
from .config import XmppSettings
from .memory import MessageMemory, reaction_ident
from .muc import NS_MUC_USER, Rooms, advertises_occupant_ids
from .outbound import XmppOutbound


class XmppConnector(XmppOutbound, BaseConnector, description=DESCRIPTION):
    """XMPP accounts (any server): 1:1 and group chats (MUC) both ways."""

    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self.settings = settings_of(ctx, XmppSettings)
        self._client: ClientXMPP | None = None
        self._reader: InboundReader[RawPayload] = InboundReader(
            high_water=self.settings.read_queue, transport=self._transport
        )
        """Stanzas read ahead of the sink: bounded, the socket is not read while it is full (sdk.reader)."""
        self._session_up = False
        self._closing = False
        self._muc = Rooms()
        self.memory = MessageMemory(ctx.state, ctx.messages, reaction_sets=self.settings.reaction_sets)
        self._legacy_imported = False
        self.last_login: str | None = None
        """``started`` (fresh session) or ``resumed`` (XEP-0198 resumption) after the last connect."""

    # --- lifecycle ------------------------------------------------------------------------------------

    async def connect(self) -> None:
        settings = self.settings
        password = await self.ctx.secrets.get("password")
        if self._client is None:  # kept across reconnects so XEP-0198 can resume the stream
            self._client = make_client(self.own_jid, password, settings)
            # slixmpp's "message" event only fires for stanzas with a <body>; markers, reactions and chat
            # states have none, so one handler takes every message stanza.
            self._client.register_handler(
                Callback("msgr-bridge messages", MatchXPath(f"{{{NS_CLIENT}}}message"), self._on_message)
            )
            self._client.register_handler(
                Callback(
                    "msgr-bridge room presence", MatchXPath(f"{{{NS_CLIENT}}}presence"), self._on_presence
                )
            )
            self._client.add_event_handler("disconnected", self._on_disconnected)
        self._client.password = password  # re-read each time: the account may have been re-linked
        if not self._legacy_imported:
            await self._import_legacy()
        self._closing = False
        self._reader.reopen()
        self._reader.forget_losses()
        outcome = self.last_login = await login(self._client, settings)
        nick = settings.nick or str(JID(self.own_jid).user)
        self._muc.configure(dict.fromkeys(settings.rooms, nick), fresh=outcome != "resumed")
        self._session_up = True
        if outcome == "resumed":
            self.log.info("xmpp.session_resumed")
            return
        client = self._client
        client.send_presence()
        try:
            await client.plugin["xep_0280"].enable(timeout=10)
            for room in self._muc.nicks:
                await client.plugin["xep_0045"].join_muc_wait(JID(room), nick, maxstanzas=0, timeout=10)
                if await advertises_occupant_ids(client, room):
                    self._muc.occupant_id_rooms.add(room)
        except TimeoutError:
            raise TransientError("the XMPP server did not answer while setting up the session") from None
        except Exception as exc:  # an IqError/PresenceError from the server: room gone, banned, ...
            raise TransientError(
                f"setting up the XMPP session failed: {exc}", hint="check the 'rooms' setting"
            ) from exc
        self.log.info("xmpp.session_started", rooms=len(self._muc.nicks))

    def _transport(self) -> asyncio.BaseTransport | None:
        return self._client.transport if self._client is not None else None

    async def subscribe(self) -> None:
        """Push queued payloads until ``disconnect()``; raise ``TransientError`` on a lost connection.

        A ``disconnect()`` that came before this task's first step ends it at once, pushing nothing: the
        core no longer listens. What is queued stays for the next ``subscribe()`` (the server counts it
        as delivered, so it would not send it again on a resumed stream).
        """
        if self._closing:
            return
        keepalive = asyncio.create_task(self._keepalive())
        try:
            await self._reader.run(self._push)
        finally:
            keepalive.cancel()

    async def _push(self, item: RawPayload) -> None:
        try:
            accepted = await self._accept(item)
        except Exception as exc:  # the state store is unavailable (a database outage)
            raise TransientError(
                f"the XMPP connector's state cannot be read or written: {describe_error(exc)}",
                hint="the catch-up after the reconnect fetches what was missed",
            ) from exc
        if accepted is not None:
            await self.ctx.sink.push(accepted)

    async def _keepalive(self) -> None:
        """Ping the server every ``ping_interval`` s; a silent server (half-open TCP) ends the connection.

        slixmpp's own keepalive (XEP-0199) would reconnect by itself; this one only drops the connection,
        so ``subscribe`` raises ``TransientError`` and the supervisor decides when to come back.
        """
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        while True:
            await self.ctx.clock.sleep(interval)
            client = self._client
            if client is None or not self._session_up:
                return
            try:
                await client.plugin["xep_0199"].ping(JID(client.boundjid.host), timeout=timeout)
            except IqTimeout:
                self.log.warning("xmpp.ping_timeout", timeout_s=timeout)
                client.abort()
                return
            except IqError:
                pass  # an error reply still proves the server is alive

    async def disconnect(self) -> None:
        self._closing = True
        self._reader.stop()
        if self._client is None:
            return
        if self._client.transport is not None:
            await self._client.disconnect(wait=2.0)
        self._session_up = False

    async def _import_legacy(self) -> None:
        """Move what an older version stored into the state maps, once (``memory.import_legacy``)."""
        try:
            moved = await self.memory.import_legacy()
        except Exception as exc:  # kept for the next connect: nothing is deleted before it is moved
            raise TransientError(f"could not move the stored XMPP message ids: {exc}") from exc
        self._legacy_imported = True
        if moved:
            self.log.info("xmpp.legacy_state_imported", entries=moved)

    def _on_disconnected(self, _event: Any) -> None:
        if self._session_up:
            self._session_up = False
            self._reader.lost("the XMPP connection was lost")

    def _on_message(self, msg: MessageStanza) -> None:
        xml = msg.xml
        if is_archive_result(xml):
            return  # MAM results are collected by sync_state
        sent_by_self: bool | None = None
        if (carbon := unwrap_carbon(xml)) is not None:
            if JID(xml.get("from") or "").full != self.own_jid:
                return  # a carbon not from our own server account is forged
            xml, sent_by_self = carbon
        payload = capture(
            xml, own_bare=self.own_jid, room_nicks=self._muc.nicks, sent_by_self=sent_by_self,
            occupant_id_rooms=self._muc.occupant_id_rooms,
        )  # fmt: skip
        if payload is not None:
            self._reader.feed(payload)

    async def _accept(self, payload: RawPayload) -> RawPayload | None:
        """The payload remembered, its ids mapped and its reaction diff added (``memory.py``), or None for
        a moderation, retraction or correction that must not be applied (logged: it may be an attack)."""
        if payload.get("kind") == "presence":
            return payload
        moderated = payload.get("moderated")
        if isinstance(moderated, Mapping) and "error" in moderated:
            self.log.warning(
                "xmpp.moderation_ignored", reason=moderated["error"], sender=payload.get("from"),
                stanza=payload.get("id"),
            )  # fmt: skip
            return None
        observed = await self.memory.observe(payload, self.own_jid)
        if (refused := await unverified(observed, self.memory, self.own_jid)) is not None:
            event, target, reason = refused
            self.log.warning(
                event, reason=reason, sender=payload.get("from"), target=target, stanza=payload.get("id")
            )
            return None
        return await self._with_reaction_diff(observed)

    def _on_presence(self, presence: Any) -> None:
        """Occupant presences of joined rooms; in stream order with messages (same handler path)."""
        if presence.xml.find(f"{{{NS_MUC_USER}}}x") is None:
            return
        payload = self._muc.observe(presence.xml)
        if payload is not None:
            self._reader.feed(payload)

    # --- state sync -----------------------------------------------------------------------------------

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        client = self._connected()
        rooms = {room: self._muc.members(room) for room in self._muc.nicks}
        contacts, conversations = await roster_snapshot(client, self.ctx.account, rooms)
        history, new_cursor, complete = await fetch_history(
            client, parse_cursor(cursor), own_bare=self.own_jid, room_nicks=self._muc.nicks,
            occupant_id_rooms=self._muc.occupant_id_rooms,
        )  # fmt: skip
        enriched = [p for raw in history if (p := await self._accept(raw)) is not None]
        return SyncSnapshot(
            contacts=contacts,
            conversations=conversations,
            history=tuple(enriched),
            cursor=json.dumps(new_cursor, sort_keys=True),
            complete=complete,
        )

    async def _with_reaction_diff(self, payload: RawPayload) -> RawPayload:
        """Add ``removed`` to a reactions payload: what the sender had before and no longer has.

        A set not remembered (never seen, or an old one dropped) removes nothing."""
        reactions = payload.get("reactions")
        if not isinstance(reactions, Mapping):
            return payload
        values = reactions.get("values")
        ident = reaction_ident(payload, self.own_jid)
        if not isinstance(values, list) or ident is None:
            return payload
        news = [v for v in values if isinstance(v, str)]
        before, _now = await self.memory.change_reactions(ident, lambda _old: news)
        removed = [e for e in before or [] if e not in news]
        return {**payload, "reactions": {**reactions, "removed": removed}}


class XmppLinkFlow(SettingsLinkFlow):
    settings_model = XmppSettings
    network = "xmpp"
    prompt = "Sign in to your XMPP account; the bridge logs in once to check the password."
    identity_fields = (FormField(name="jid", label="XMPP address (name@example.org)"),)
    secret_fields = (FormField(name="password", label="Password", secret=True),)

    async def verify(
        self, settings: XmppSettings, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        raw_jid, password = str(identity.get("jid") or "").strip(), secrets.get("password", "")
        try:
            jid = JID(raw_jid)
        except InvalidJID:
            jid = JID()
        if not jid.user or not jid.domain or not password:
            raise ConfigError(
                f"not a usable XMPP address and password: {raw_jid!r}",
                hint="enter an address like name@example.org and its password",
            )
        client = make_client(jid.bare, password, settings)

        async def close() -> None:  # awaited before the account's real session starts
            if client.transport is not None:
                await client.disconnect(wait=2.0)

        self.probe(close)
        await login(client, settings)  # AuthenticationFailed / TransientError: the person answers again
        return LinkResult(
            remote_user_id=jid.bare,
            display_name=jid.bare,
            settings=settings.model_dump(mode="json", exclude_unset=True),
            secrets={"password": password},
        )
