"""The outbound side of the XMPP connector: messages, corrections, retractions, reactions, markers and
chat states. In rooms, replies, reactions, retractions and markers name the room's stanza-id when the
message is remembered (``memory.py``)."""

from __future__ import annotations

from typing import ClassVar

from slixmpp import JID, ClientXMPP
from slixmpp.jid import InvalidJID
from slixmpp.stanza import Message as MessageStanza

from msgr_bridge import (
    ConnectorContext,
    NotSupported,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
)
from msgr_bridge.schema import ReactionAction

from .memory import MessageMemory
from .muc import Rooms


class XmppOutbound:
    """Mixed into ``XmppConnector``, whose session and memory it uses."""

    network: ClassVar[str]
    ctx: ConnectorContext
    memory: MessageMemory
    _client: ClientXMPP | None
    _session_up: bool
    _muc: Rooms

    @property
    def own_jid(self) -> str:
        return str(JID(self.ctx.account.remote_user_id).bare)

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

    async def _reference(self, msg: MessageStanza, remote_id: str) -> str:
        """The id an outbound reaction, retraction or read marker names: in a room its stanza-id, if known."""
        return (await self.memory.outbound(str(msg["to"]), remote_id, msg["type"] == "groupchat"))[0]

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
            reply_id, author = await self.memory.outbound(conversation, message.reply_to, groupchat)
            msg["reply"]["id"] = reply_id
            if author:
                msg["reply"]["to"] = author
        msg.send()
        if not groupchat:  # a room message is remembered when the room reflects it, with its stanza-id
            author = f"{to.bare}/{self._muc.nicks[to.bare]}" if to.resource else self.own_jid
            await self.memory.remember(conversation, message.txn_id, author)
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
        ref = await self._reference(msg, target_id)
        self._connected().plugin["xep_0424"].send_retraction(msg["to"], ref, mtype=msg["type"])

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        """Send our whole set on the message with ``emoji`` added or taken out (XEP-0444 has no deltas).

        The set is stored before it is sent, so a retry after a failed send computes the same set."""
        msg = self._message(conversation_id)
        ref = await self._reference(msg, target_id)

        def changed(old: list[str] | None) -> list[str]:
            kept = [e for e in old or [] if e != emoji]
            return [*kept, emoji] if action == ReactionAction.ADD else kept

        ident = (str(JID(conversation_id).bare), target_id, self.own_jid)
        _old, current = await self.memory.change_reactions(ident, changed)
        self._connected().plugin["xep_0444"].set_reactions(msg, ref, current)
        msg.enable("store")
        msg.send()

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        msg = self._message(conversation_id)
        msg["displayed"]["id"] = await self._reference(msg, up_to_id)
        msg.send()

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        msg = self._message(conversation_id)
        msg["chat_state"] = "composing" if active else "paused"
        msg.enable("no-store")  # XEP-0334: typing is not worth archiving
        msg.send()
