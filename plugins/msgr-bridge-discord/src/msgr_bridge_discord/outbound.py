"""Sending to Discord: as the person through a channel webhook, or as the bot with the name in the text.

With ``allow_webhooks`` (the operator's choice; the bot needs Manage Webhooks) a message goes through the
bridge's webhook in its channel (made once, kept in the account's secrets) with ``person_name`` and
``person_avatar_url``, executed with ``wait=true`` so Discord answers with the message and its id: that id
is the ``SendResult``, and the echo the gateway brings back carries our ``txn_id``. Replies go as the bot
(webhooks cannot carry a ``message_reference``), and so does everything in a DM. Without webhooks the bot
sends ``**name**: text``. Edits and deletes of a webhook's message go through the webhook. Markdown goes
as it is (Discord renders it); HTML goes as its plain text.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from msgr_bridge import (
    BaseConnector,
    NotSupported,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
)
from msgr_bridge.schema import ReactionAction, TextFormat

from .client import DiscordRest, FilePart, WebhookGone
from .config import WEBHOOK_SECRET_PREFIX, DiscordSettings
from .convert import nonce_for
from .media import open_files

MAX_MESSAGE = 2000
WEBHOOK_NAME = "msgr-bridge"
MAX_REMEMBERED = 2000
ECHO_WAIT_S = 5.0


def split_text(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at a line break or space when there is one."""
    chunks = []
    while len(text) > limit:
        cut = max(text.rfind("\n", 0, limit), text.rfind(" ", 0, limit))
        cut = cut if cut > limit // 2 else limit
        chunks.append(text[:cut])
        text = text[cut:].lstrip("\n ") if cut < limit else text[cut:]
    return [*chunks, text] if text or not chunks else chunks


def _content(message: OutboundMessage) -> str:
    """Markdown goes as it is (Discord renders it); HTML goes as its plain text."""
    if message.format is TextFormat.MARKDOWN and message.formatted:
        return message.formatted
    return message.text


class Outbound(BaseConnector):
    settings: DiscordSettings
    channels: dict[str, dict[str, Any]]

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.rest: DiscordRest | None = None
        self.self_id = ""
        self.own_webhooks: set[str] = set()
        self._hooks: dict[str, dict[str, str]] = {}
        self._sent: OrderedDict[str, str] = OrderedDict()
        """Message ids of our sends -> the txn id of a first part ("" for the others); bounded."""
        self._nonces: OrderedDict[str, str] = OrderedDict()
        self._sending: dict[str, int] = {}
        self._sent_event = asyncio.Event()

    def _client(self) -> DiscordRest:
        if self.rest is None:
            raise TransientError("not connected to Discord")
        return self.rest

    def _remember(self, table: OrderedDict[str, str], key: str, value: str) -> None:
        table[key] = value
        while len(table) > MAX_REMEMBERED:
            table.popitem(last=False)

    async def txn_of(self, d: Mapping[str, Any]) -> str | None:
        """Our txn id when a MESSAGE_CREATE is the echo of our own send. A webhook's echo can beat the
        HTTP answer that tells us its id: while a send is in flight in that channel, wait for it."""
        mid, nonce = str(d.get("id")), d.get("nonce")
        if isinstance(nonce, str) and nonce in self._nonces:
            return self._nonces[nonce]
        ours = (
            str(d.get("webhook_id")) in self.own_webhooks
            or str(d.get("author", {}).get("id")) == self.self_id
        )
        channel = str(d.get("channel_id"))
        try:
            async with asyncio.timeout(ECHO_WAIT_S):
                while ours and mid not in self._sent and self._sending.get(channel):
                    await self._sent_event.wait()
        except TimeoutError:
            pass
        return self._sent.get(mid) or None

    # --- webhooks ------------------------------------------------------------------------------------

    async def _webhook(self, channel_id: str) -> dict[str, str]:
        hook = self._hooks.get(channel_id)
        if hook is not None:
            return hook
        key = WEBHOOK_SECRET_PREFIX + channel_id
        stored = await self.ctx.secrets.get_optional(key)
        if stored:
            hook = dict(orjson.loads(stored))
        else:
            rest = self._client()
            mine = [
                w
                for w in await rest.webhooks(channel_id)
                if w.get("name") == WEBHOOK_NAME
                and w.get("user", {}).get("id") == self.self_id
                and w.get("token")
            ]
            found = mine[0] if mine else await rest.create_webhook(channel_id, WEBHOOK_NAME)
            hook = {"id": str(found["id"]), "token": str(found["token"])}
            await self.ctx.secrets.put(key, orjson.dumps(hook).decode())
        self._hooks[channel_id] = hook
        self.own_webhooks.add(hook["id"])
        return hook

    async def _execute(
        self, channel_id: str, body: dict[str, Any], thread: str | None, files: Sequence[FilePart]
    ) -> dict[str, Any]:
        """Execute the channel's webhook; one that was deleted in Discord is forgotten and made again (at
        once without files; with files, on the core's retry, since their streams were read)."""
        rest = self._client()
        try:
            return await rest.execute_webhook(
                await self._webhook(channel_id), body, thread_id=thread, files=files
            )
        except WebhookGone as exc:
            self._hooks.pop(channel_id, None)
            await self.ctx.secrets.delete(WEBHOOK_SECRET_PREFIX + channel_id)
            if files:
                raise TransientError(f"{exc.message}; a new webhook is made on the next try") from exc
            return await rest.execute_webhook(
                await self._webhook(channel_id), body, thread_id=thread, files=files
            )

    def _route(self, conversation_id: str, thread_id: str | None) -> tuple[str, str | None, bool]:
        """(channel to post in, thread id for the webhook, whether a webhook may be used there)."""
        target = thread_id or conversation_id
        channel = self.channels.get(target, {})
        kind = channel.get("type")
        if kind in (10, 11, 12):
            return str(channel.get("parent_id")), target, True
        return target, None, kind in (0, 5)

    # --- the contract --------------------------------------------------------------------------------

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        self._client()
        limit = self.settings.max_attachment_bytes
        async with open_files(self.ctx.media, message.attachments, limit) as files:
            return await self._send(conversation_id, message, files)

    async def _send(
        self, conversation_id: str, message: OutboundMessage, files: list[FilePart]
    ) -> SendResult:
        rest = self._client()
        text = _content(message)
        hook_channel, thread, hookable = self._route(conversation_id, message.thread_id)
        use_hook = self.settings.allow_webhooks and hookable and message.reply_to is None
        name = self.settings.person_name
        if not use_hook and name:
            text = f"**{name}**: {text}"
        chunks = split_text(text)
        if not chunks[0] and not files:
            raise PermanentError("a Discord message needs text or a file")
        channel_id = message.thread_id or conversation_id
        ids: list[str] = []
        self._sending[channel_id] = self._sending.get(channel_id, 0) + 1
        try:
            for index, chunk in enumerate(chunks):
                part_files = files if index == len(chunks) - 1 else []
                if use_hook:
                    body: dict[str, Any] = {"content": chunk, "username": name or WEBHOOK_NAME}
                    if self.settings.person_avatar_url:
                        body["avatar_url"] = self.settings.person_avatar_url
                    sent = await self._execute(hook_channel, body, thread, part_files)
                else:
                    nonce = nonce_for(message.txn_id, index)
                    if index == 0:
                        self._remember(self._nonces, nonce, message.txn_id)
                    body = {"content": chunk, "nonce": nonce, "enforce_nonce": True}
                    if message.reply_to and index == 0:
                        body["message_reference"] = {
                            "message_id": message.reply_to,
                            "fail_if_not_exists": False,
                        }
                    sent = await rest.send(channel_id, body, part_files)
                ids.append(str(sent["id"]))
                self._remember(self._sent, ids[-1], message.txn_id if index == 0 else "")
                self._sent_event.set()
                self._sent_event = asyncio.Event()
        finally:
            self._sending[channel_id] -= 1
            if not self._sending[channel_id]:
                del self._sending[channel_id]
        return SendResult(remote_id=ids[0], extra_parts=tuple(ids[1:]))

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        rest = self._client()
        text = _content(message)[:MAX_MESSAGE]
        try:
            await rest.edit(conversation_id, target_id, {"content": text})
        except PermanentError:
            hook_channel, thread, hookable = self._route(conversation_id, None)
            if not (hookable and self.settings.allow_webhooks):
                raise
            await rest.webhook_message(
                await self._webhook(hook_channel), target_id, {"content": text}, thread_id=thread
            )
        return SendResult(remote_id=target_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        rest = self._client()
        try:
            await rest.delete(conversation_id, target_id)
        except PermanentError:
            hook_channel, thread, hookable = self._route(conversation_id, None)
            if not (hookable and self.settings.allow_webhooks):
                raise
            await rest.webhook_message(await self._webhook(hook_channel), target_id, None, thread_id=thread)

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        if emoji.startswith(":") and emoji.endswith(":"):
            raise NotSupported(
                "custom emoji reactions",
                network=self.network,
                hint="the bridge can react with Unicode emoji only",
            )
        await self._client().react(conversation_id, target_id, emoji, action is ReactionAction.ADD)

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        """Discord shows typing for about ten seconds per call and has no "stopped": inactive is a no-op."""
        if active:
            await self._client().typing(conversation_id)
