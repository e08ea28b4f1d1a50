"""The XMPP connector: one slixmpp client session per linked account.

Lifecycle as the supervisor drives it: ``connect`` logs in (resuming the previous stream with XEP-0198
when the server still holds it, otherwise a fresh session: initial presence, carbons, rooms joined),
``sync_state`` returns the roster, the rooms and the messages archived (XEP-0313) since the cursor,
``subscribe`` hands live stanzas to the sink in arrival order and raises ``TransientError`` when the
connection drops. slixmpp never reconnects on its own here; the supervisor's back-off decides.

Room membership (``muc.py``): occupants present when we join are the room conversation's ``members`` in
the snapshot; joins, leaves and nick changes after that are pushed live as presence payloads. Replies
(XEP-0461, ``replies.py``) go both ways; in rooms, replies, reactions and retractions name the room's
stanza-id, mapped to and from our ``remote_id`` there, and so do read markers. Moderator retractions
(XEP-0425, ``moderation.py``) announced by a room become deletes; forged or unusable ones are logged and
dropped. Retractions (XEP-0424) and corrections (XEP-0308) are applied only when they come from the
original's author (``authorship.py``: occupant-id or occupant JID in rooms, bare JID in chats); others,
and in rooms those of messages no longer remembered, are logged and dropped.

Secrets: ``password``. Settings: see ``client.py`` (server, port, security, ca_file, rooms, nick).
Persistent state (``ctx.state``): the most recent reaction sets per (conversation, message, sender)
(``reactions.py``, bounded by ``reaction_sets``), because XEP-0444 always sends a sender's whole set and
the canonical events are per-emoji changes; and the remembered message ids and room stanza-ids
(``idstore.py``), read back on the first connect and written in batches (every ``id_flush_interval``
seconds while new ones are pending, after a sync, on disconnect), with each message's author for the
author check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import InvalidJID
from slixmpp.stanza import Message as MessageStanza
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from msgr_bridge import (
    Account,
    BaseConnector,
    Capabilities,
    ConnectorContext,
    NotSupported,
    OutboundMessage,
    PermanentError,
    SendResult,
    SyncSnapshot,
    TransientError,
)
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload
from msgr_bridge.schema import Event, ReactionAction
from msgr_bridge.sdk.reader import InboundReader

from . import __version__
from .archive import fetch_history, parse_cursor, roster_snapshot
from .authorship import unverified
from .client import NS_CLIENT, capture, is_archive_result, login, make_client, room_list, unwrap_carbon
from .convert import convert as _convert
from .idstore import IdStore
from .link import XmppLinkFlow
from .muc import NS_MUC_USER, Rooms, advertises_occupant_ids
from .reactions import ReactionSets, capacity_setting, payload_ident
from .replies import RecentMessages


class XmppConnector(BaseConnector):
    """XMPP accounts (any server): 1:1 and group chats (MUC) both ways."""

    network: ClassVar[str] = "xmpp"
    display_name: ClassVar[str] = "XMPP"
    version: ClassVar[str] = __version__
    capabilities: ClassVar[Capabilities] = Capabilities(
        send=True,
        edits=True,  # XEP-0308; receiving clients decide how old a message may still be corrected
        deletes=True,
        reactions=True,
        replies=True,  # XEP-0461
        read_receipts=True,
        typing=True,
        history_catchup=True,
        attachments=(),  # no XEP-0363 upload yet (inbound OOB links do arrive as attachments)
        rate_limit_per_s=5.0,
        rate_limit_burst=10,
        echoes_own_sends=True,  # rooms reflect our messages; the txn_id travels as the stanza/origin id
    )

    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self._client: ClientXMPP | None = None
        self._reader: InboundReader[RawPayload] = InboundReader(
            high_water=int(ctx.settings.get("read_queue", 1024)), transport=self._transport
        )
        """Stanzas read ahead of the sink: bounded, the socket is not read while it is full (sdk.reader)."""
        self._session_up = False
        self._closing = False
        self._muc = Rooms()
        self._recent = RecentMessages()
        self._ids = IdStore(ctx.state)
        self._reactions = ReactionSets(ctx.state, capacity=capacity_setting(ctx.settings))
        self._ids_loaded = False
        self.last_login: str | None = None
        """``started`` (fresh session) or ``resumed`` (XEP-0198 resumption) after the last connect."""

    # --- class level ----------------------------------------------------------------------------------

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        return XmppLinkFlow(settings)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return _convert(payload, account)

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def own_jid(self) -> str:
        return str(JID(self.ctx.account.remote_user_id).bare)

    async def connect(self) -> None:
        settings = self.ctx.settings
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
        if not self._ids_loaded:
            await self._load_ids()
        self._closing = False
        self._reader.reopen()
        self._reader.forget_losses()
        outcome = self.last_login = await login(self._client, settings)
        nick = str(settings.get("nick") or JID(self.own_jid).user)
        self._muc.configure(dict.fromkeys(room_list(settings), nick), fresh=outcome != "resumed")
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
        helpers = [asyncio.create_task(self._keepalive()), asyncio.create_task(self._flush_ids_regularly())]
        try:
            await self._reader.run(self._push)
        finally:
            for task in helpers:
                task.cancel()

    async def _push(self, item: RawPayload) -> None:
        await self.ctx.sink.push(await self._with_reaction_diff(item))

    async def _keepalive(self) -> None:
        """Ping the server every ``ping_interval`` s; a silent server (half-open TCP) ends the connection.

        slixmpp's own keepalive (XEP-0199) would reconnect by itself; this one only drops the connection,
        so ``subscribe`` raises ``TransientError`` and the supervisor decides when to come back.
        """
        interval = float(self.ctx.settings.get("ping_interval", 60.0))
        timeout = float(self.ctx.settings.get("ping_timeout", 20.0))
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
        await self._flush_ids()

    # --- remembered ids (idstore.py) ------------------------------------------------------------------

    async def _load_ids(self) -> None:
        try:
            entries = await self._ids.load()
        except Exception as exc:  # starting empty would overwrite what is stored: better to retry later
            raise TransientError(f"could not read the remembered XMPP message ids: {exc}") from exc
        self._recent.load(entries)
        self._ids_loaded = True
        self.log.info("xmpp.ids_loaded", entries=len(entries), skipped=self._ids.skipped)

    async def _flush_ids(self) -> None:
        """Write pending ids; a failure is logged and retried by the next flush (nothing is lost)."""
        if not self._ids_loaded:
            return
        try:
            await self._ids.flush(self._recent.take_pending())
        except Exception as exc:
            self.log.warning("xmpp.ids_flush_failed", error=str(exc))

    async def _flush_ids_regularly(self) -> None:
        interval = float(self.ctx.settings.get("id_flush_interval", 5.0))
        while True:
            await self.ctx.clock.sleep(interval)
            if self._recent.pending or self._ids.unwritten:
                await self._flush_ids()

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
        if (accepted := self._accept(payload)) is not None:
            self._reader.feed(accepted)

    def _accept(self, payload: RawPayload | None) -> RawPayload | None:
        """The payload remembered and with its ids mapped (``replies.py``), or None: for nothing, and for
        a moderation, retraction or correction that must not be applied (logged: it may be an attack)."""
        if payload is None:
            return None
        moderated = payload.get("moderated")
        if isinstance(moderated, Mapping) and "error" in moderated:
            self.log.warning(
                "xmpp.moderation_ignored", reason=moderated["error"], sender=payload.get("from"),
                stanza=payload.get("id"),
            )  # fmt: skip
            return None
        observed = self._recent.observe(payload, self.own_jid)
        if (refused := unverified(observed, self._recent, self.own_jid)) is not None:
            event, target, reason = refused
            self.log.warning(
                event, reason=reason, sender=payload.get("from"), target=target, stanza=payload.get("id")
            )
            return None
        return observed

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
        enriched = [
            await self._with_reaction_diff(p) for raw in history if (p := self._accept(raw)) is not None
        ]
        await self._flush_ids()
        return SyncSnapshot(
            contacts=contacts,
            conversations=conversations,
            history=tuple(enriched),
            cursor=json.dumps(new_cursor, sort_keys=True),
            complete=complete,
        )

    async def _with_reaction_diff(self, payload: RawPayload) -> RawPayload:
        """Add ``removed`` to a reactions payload: what the sender had before and no longer has.

        A set not remembered (``reactions.py``: never seen, or an old one dropped) removes nothing."""
        reactions = payload.get("reactions")
        if not isinstance(reactions, Mapping):
            return payload
        values = reactions.get("values")
        ident = payload_ident(payload, self.own_jid)
        if not isinstance(values, list) or ident is None:
            return payload
        news = [v for v in values if isinstance(v, str)]
        before, _now = await self._reactions.change(ident, lambda _old: news)
        removed = [e for e in before or [] if e not in news]
        return {**payload, "reactions": {**reactions, "removed": removed}}

    # --- outbound -------------------------------------------------------------------------------------

    def _connected(self) -> ClientXMPP:
        if self._client is None or not self._session_up:
            raise TransientError("the XMPP account is not connected", hint="the supervisor reconnects it")
        return self._client

    def _message(self, conversation_id: str) -> MessageStanza:
        try:
            to = JID(conversation_id)
        except InvalidJID:
            raise PermanentError(f"not an XMPP conversation: {conversation_id!r}") from None
        if to.resource and to.bare in self._muc.nicks:  # a private message to a room occupant
            return self._connected().make_message(mto=to, mtype="chat")
        if not to.user or to.resource:
            raise NotSupported(
                "messages to a full JID", network=self.network, hint="use a bare JID or a room JID"
            )
        mtype = "groupchat" if to.bare in self._muc.nicks else "chat"
        return self._connected().make_message(mto=to.bare, mtype=mtype)

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        if message.attachments:
            raise NotSupported("attachments", network=self.network)
        msg = self._message(conversation_id)
        msg["id"] = message.txn_id
        msg["body"] = message.text
        msg.enable("markable")
        if msg["type"] == "chat":
            msg["request_receipt"] = True
        groupchat, to = msg["type"] == "groupchat", msg["to"]
        conversation = str(to)  # bare, or the occupant JID of a private message in a room
        if message.reply_to:
            reply_id, author = self._recent.outbound(conversation, message.reply_to, groupchat)
            msg["reply"]["id"] = reply_id
            if author:
                msg["reply"]["to"] = author
        msg.send()
        if not groupchat:  # a room message is remembered when the room reflects it, with its stanza-id
            author = f"{to.bare}/{self._muc.nicks[to.bare]}" if to.resource else self.own_jid
            self._recent.remember(conversation, message.txn_id, author)
        return SendResult(remote_id=message.txn_id)

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        msg = self._message(conversation_id)
        msg["id"] = message.txn_id
        msg["body"] = message.text
        msg["replace"]["id"] = target_id
        msg.send()
        return SendResult(remote_id=message.txn_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        msg = self._message(conversation_id)
        ref = self._recent.reference(str(msg["to"]), target_id, msg["type"] == "groupchat")
        self._connected().plugin["xep_0424"].send_retraction(msg["to"], ref, mtype=msg["type"])

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        """Send our whole set on the message with ``emoji`` added or taken out (XEP-0444 has no deltas).

        The set is stored before it is sent, so a retry after a failed send computes the same set."""
        msg = self._message(conversation_id)
        ref = self._recent.reference(str(msg["to"]), target_id, msg["type"] == "groupchat")

        def changed(old: list[str] | None) -> list[str]:
            kept = [e for e in old or [] if e != emoji]
            return [*kept, emoji] if action == ReactionAction.ADD else kept

        ident = (str(JID(conversation_id).bare), target_id, self.own_jid)
        _old, current = await self._reactions.change(ident, changed)
        self._connected().plugin["xep_0444"].set_reactions(msg, ref, current)
        msg.enable("store")
        msg.send()

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        msg = self._message(conversation_id)
        msg["displayed"]["id"] = self._recent.reference(str(msg["to"]), up_to_id, msg["type"] == "groupchat")
        msg.send()

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        msg = self._message(conversation_id)
        msg["chat_state"] = "composing" if active else "paused"
        msg.enable("no-store")  # XEP-0334: typing is not worth archiving
        msg.send()
