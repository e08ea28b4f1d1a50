"""What the core asks of a WhatsApp account: send (text, replies, files), edit, delete, react, mark read,
typing, and the state snapshot (groups with their members, contacts). A mixin of ``WhatsAppConnector``.

Every send waits for the account's ``SendPacer`` (at least ``send_interval_s`` between two sends plus a
random jitter). The id WhatsApp answers with is remembered with the send's transaction id, so the echo of
our own message (seen by our other devices and by history sync) is recognised.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from msgr_bridge import OutboundMessage, SendResult, SyncSnapshot
from msgr_bridge.errors import PermanentError, TransientError
from msgr_bridge.schema import Contact, Conversation, ConversationKind, ReactionAction

from .convert import NETWORK
from .media import upload_message
from .outgoing import edit_message, reaction_message, reply_context, revoke_message, text_message

RECENT_MAX = 5000


def remember(mapping: OrderedDict[str, str], key: str, value: str) -> None:
    """Bounded: the oldest entries go first."""
    mapping[key] = value
    mapping.move_to_end(key)
    while len(mapping) > RECENT_MAX:
        mapping.popitem(last=False)


def _when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else datetime.now(UTC)


class Actions:
    ctx: Any
    log: Any
    wa: Any
    settings: Any
    pacer: Any
    self_jid: str
    sent: OrderedDict[str, str]
    authors: OrderedDict[str, str]

    def _wire(self) -> Any:
        if self.wa is None:
            raise TransientError("not connected to WhatsApp")
        return self.wa

    def author_of(self, chat: str, message_id: str) -> str | None:
        """Who sent ``message_id`` (what this connection saw; ``ctx.messages`` lookups would plug in here)."""
        if message_id in self.sent:
            return self.self_jid
        return self.authors.get(f"{chat} {message_id}")

    def _group_author(self, chat: str, message_id: str) -> str | None:
        return self.author_of(chat, message_id) if chat.endswith("@g.us") else None

    async def _sent(self, chat: str, message: Any, txn_id: str | None) -> SendResult:
        await self.pacer.wait()
        response = await self._wire().send(chat, message)
        if txn_id:
            remember(self.sent, response.ID, txn_id)
        return SendResult(remote_id=response.ID, timestamp=_when(int(response.Timestamp)))

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        context = reply_context(message.reply_to, self._group_author(conversation_id, message.reply_to or ""))
        if message.attachments:
            results = []
            for index, attachment in enumerate(message.attachments):
                built = await upload_message(
                    self._wire(),
                    self.ctx.media,
                    attachment,
                    caption=message.text if index == 0 else "",
                    context=context if index == 0 else None,
                    max_bytes=self.settings.media_max_bytes,
                )
                results.append(await self._sent(conversation_id, built, message.txn_id))
            return SendResult(
                remote_id=results[0].remote_id,
                extra_parts=tuple(r.remote_id for r in results[1:]),
                timestamp=results[0].timestamp,
            )
        if not message.text.strip():
            raise PermanentError("a WhatsApp message needs some text or a file")
        return await self._sent(conversation_id, text_message(message.text, context), message.txn_id)

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        await self._sent(conversation_id, edit_message(conversation_id, target_id, message.text), None)
        return SendResult(remote_id=target_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        await self._sent(conversation_id, revoke_message(conversation_id, target_id), None)

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        author = self.author_of(conversation_id, target_id)
        from_me = author == self.self_jid
        text = emoji if action == ReactionAction.ADD else ""
        built = reaction_message(conversation_id, target_id, text, from_me=from_me, sender=author)
        await self._sent(conversation_id, built, None)

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        sender = self._group_author(conversation_id, up_to_id) or conversation_id
        await self._wire().mark_read(conversation_id, sender, [up_to_id])

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        await self._wire().typing(conversation_id, active)

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        """Groups (name, topic, members) and the address book whatsmeow keeps; WhatsApp has no history
        fetch, so the snapshot is never complete (what was missed arrives live on reconnect)."""
        wa, account = self._wire(), self.ctx.account.id
        conversations = []
        for group in await wa.groups():
            chat = f"{group.JID.User}@{group.JID.Server}"
            members = tuple(f"{p.JID.User}@{p.JID.Server}" for p in group.Participants if p.JID.User)
            conversations.append(
                Conversation(
                    network=NETWORK,
                    account_id=account,
                    remote_id=chat,
                    name=group.GroupName.Name or None,
                    type=ConversationKind.GROUP,
                    topic=group.GroupTopic.Topic or None,
                    members=members,
                )
            )
        contacts = []
        for contact in await wa.contacts():
            jid = f"{contact.JID.User}@{contact.JID.Server}"
            name = contact.Info.FullName or contact.Info.PushName or contact.Info.BusinessName or None
            contacts.append(
                Contact(
                    network=NETWORK,
                    account_id=account,
                    remote_id=jid,
                    display_name=name,
                    is_self=jid == self.self_jid,
                )
            )
        return SyncSnapshot(
            contacts=tuple(contacts), conversations=tuple(conversations), cursor=cursor, complete=False
        )
