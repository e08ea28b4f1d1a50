"""The Teams connector: adapts Graph (``client.py``), msal (``auth.py``) and the poller (``poll.py``) to the
bridge's connector contract.

Conversation ids are Graph's chat ids (``19:…@thread.v2``, ``19:…@unq.gbl.spaces``) for 1:1 and group chats,
and ``<team id>/<channel id>`` for channels. ``subscribe()`` polls (see ``poll.py``) with an interval that
drops to ``poll_min_s`` after activity and grows by half per quiet round up to ``poll_max_s``; Graph's
throttling (429/503 with ``Retry-After``) makes the round wait that long and try again, nothing is skipped.
Sending raises ``RateLimited(retry_after)`` instead, so the outbox waits. Change notifications need an
HTTP route on the bridge for Graph to post to, which the core does not offer connectors yet: polling is the
only receiving mode (docs/networks/teams.md).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import anyio

from msgr_bridge import (
    Account,
    BaseConnector,
    Capabilities,
    NotSupported,
    OutboundMessage,
    PermanentError,
    RateLimited,
    SendResult,
    SyncSnapshot,
    TransientError,
)
from msgr_bridge.connectors.protocol import Ack, LinkFlow, RawPayload
from msgr_bridge.schema import Event, ReactionAction

from .auth import Tokens
from .channels import Entry, channel_changes
from .client import Graph
from .config import CAPABILITIES, SECRET_TOKEN_CACHE, TeamsSettings, TeamsSettingsModel
from .convert import NETWORK, convert
from .outbound import chat_message_path, conversation_path, message_body
from .poll import Known, chat_changes

STATE_CURSORS = "cursors"
STATE_CHANNELS = "channels"
SENT_MAX = 2_000
CHANNEL_CAPS = Capabilities(
    send=True,
    formatted_text=True,
    replies=True,
    threads=True,
    max_text_length=28_000,
    history_catchup=False,
    rate_limit_per_s=1.0,
    rate_limit_burst=5,
)


class TeamsConnector(BaseConnector):
    network: ClassVar[str] = NETWORK
    display_name: ClassVar[str] = "Microsoft Teams"
    version: ClassVar[str] = "0.1.0"
    settings_model: ClassVar[type[TeamsSettingsModel]] = TeamsSettingsModel
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    """Chats (1:1 and group). Graph has no typing API and no per-message read receipts (marking a chat read
    is the receipt). Sending files needs an upload to the sender's OneDrive first: not built, so no
    attachments outbound (received files come as references). Channels: see ``conversation_capabilities``.
    The rate is a conservative share of Graph's per-user Teams limits."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.settings = TeamsSettings.from_mapping(ctx.settings)
        self.tokens = Tokens(self.settings, self._load_cache, self._save_cache)
        self.graph = Graph(self.settings, self.tokens)
        self.self_id = ctx.account.remote_user_id
        self.cursors: dict[str, str] = {}
        """Where the next poll of each chat starts (what was fetched, committed or not)."""
        self.committed: dict[str, str] = {}
        """What the pipeline committed, per chat; persisted in ctx.state (``cursors``)."""
        self.channel_entries: dict[str, Entry] = {}
        """Per followed channel: its deltaLink and newest timestamp fetched (``channels.py``)."""
        self.channel_committed: dict[str, Entry] = {}
        self.known = Known()
        self.sent: OrderedDict[str, str] = OrderedDict()
        self.chats: list[str] = []
        self.rounds = 0
        self.interval = self.settings.poll_min_s
        self._stop = anyio.Event()
        self._stopped = False
        self._sending = 0
        self._sends_done = anyio.Event()

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        from .link import TeamsLinkFlow

        return TeamsLinkFlow(settings)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return convert(payload, account)

    def conversation_capabilities(self, conversation_id: str) -> Capabilities:
        return CHANNEL_CAPS if "/" in conversation_id else self.capabilities

    async def _load_cache(self) -> str | None:
        return await self.ctx.secrets.get_optional(SECRET_TOKEN_CACHE)

    async def _save_cache(self, serialized: str) -> None:
        await self.ctx.secrets.put(SECRET_TOKEN_CACHE, serialized)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        self._stopped, self._stop = False, anyio.Event()
        try:
            await self.graph.open()
            await self.tokens.open()
            me = await self.graph.request("GET", "/me")  # fails fast on a revoked account
        except BaseException:  # refused, failed or cancelled half way: nothing stays open
            with anyio.CancelScope(shield=True):
                await self.disconnect()
            raise
        if isinstance(me, dict) and isinstance(me.get("id"), str):
            self.self_id = me["id"]
        stored = await self.ctx.state.get(STATE_CURSORS, {})
        self.merge_cursors(stored if isinstance(stored, dict) else {})
        channels = await self.ctx.state.get(STATE_CHANNELS, {})
        for conv, entry in channels.items() if isinstance(channels, dict) else ():
            if isinstance(entry, dict) and conv not in self.channel_entries:
                self.channel_committed[conv] = self.channel_entries[conv] = dict(entry)

    def merge_cursors(self, stored: Mapping[str, Any]) -> None:
        for conv, stamp in stored.items():
            if isinstance(stamp, str) and stamp > self.committed.get(conv, ""):
                self.committed[conv] = stamp
                self.cursors[conv] = max(stamp, self.cursors.get(conv, ""))

    async def disconnect(self) -> None:
        self._stopped = True
        self._stop.set()
        with anyio.CancelScope(shield=True):  # a stop during cancellation still closes the sessions
            await self.graph.close()
        self.tokens.close()

    async def subscribe(self) -> None:
        while not self.stopping():
            try:
                pushed = await self.poll_round()
            except RateLimited as exc:
                self.log.info("teams.throttled", retry_after=exc.retry_after)
                await self._wait(exc.retry_after)
                continue
            except TransientError:
                if self.stopping():
                    return  # disconnect() closed the session under a request
                raise
            if self.stopping():
                return
            self.interval = (
                self.settings.poll_min_s if pushed else min(self.settings.poll_max_s, self.interval * 1.5)
            )
            await self._wait(self.interval)

    def stopping(self) -> bool:
        """Whether ``disconnect()`` was called (a method: it changes while ``subscribe`` awaits)."""
        return self._stopped

    async def _wait(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._stop.wait()

    async def poll_round(self) -> int:
        """One polling round over every chat; returns how many payloads it pushed."""
        if not self.chats or self.rounds % self.settings.chats_every == 0:
            await self.list_chats()
        self.rounds += 1
        pushed = 0
        for conv in list(self.chats):
            if self.stopping():
                break
            found, newest = await chat_changes(
                self.fetch,
                conv,
                self.cursors.get(conv),
                self.known,
                self.self_id,
                self.sent,
                first_page_only=conv not in self.cursors,
            )
            for payload, modified in found:
                if self.stopping():
                    return pushed
                await self.ctx.sink.push(payload, ack=self._ack(conv, modified))
                pushed += 1
            if newest is not None:
                self.cursors[conv] = newest
        for conv in self.settings.channels:
            if self.stopping():
                break
            entry = self.channel_entries.get(conv, {})
            found_in_channel, new_entry = await channel_changes(
                self.graph, conv, entry, self.known, self.self_id, self.sent, self.settle
            )
            self.channel_entries[conv] = new_entry
            commit = self._channel_commit(conv, new_entry, len(found_in_channel))
            if not found_in_channel:
                await commit()
            for payload in found_in_channel:
                if self.stopping():
                    return pushed
                await self.ctx.sink.push(payload, ack=commit)
                pushed += 1
        return pushed

    def _channel_commit(self, conv: str, entry: Entry, count: int) -> Ack:
        """An ack that commits the channel's new link once all ``count`` payloads were acknowledged."""
        left = [count]

        async def ack() -> None:
            left[0] -= 1
            if left[0] <= 0:
                self.channel_committed[conv] = entry
                await self.ctx.state.set(STATE_CHANNELS, dict(self.channel_committed))

        return ack

    async def fetch(self, path: str, params: dict[str, str], most: int) -> list[dict[str, Any]]:
        """Graph's answer, once the sends in flight have their ids: a fetch can see our new message before
        its send returns, and the echo must still find the send's txn id."""
        items = await self.graph.pages(path, params, most)
        await self.settle()
        return items

    async def settle(self) -> None:
        if self._sending:
            with anyio.move_on_after(self.settings.request_timeout_s):
                await self._sends_done.wait()

    def _ack(self, conv: str, modified: str) -> Ack:
        async def ack() -> None:
            if modified > self.committed.get(conv, ""):
                self.committed[conv] = modified
                await self.ctx.state.set(STATE_CURSORS, dict(self.committed))

        return ack

    async def list_chats(self) -> list[dict[str, Any]]:
        chats = await self.graph.pages("/me/chats", {"$top": "50"})
        self.chats = [c["id"] for c in chats if isinstance(c.get("id"), str)]
        return chats

    # --- outbound -----------------------------------------------------------------------------------

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        base = conversation_path(conversation_id)
        body = message_body(message)
        path = f"{base}/messages"
        root = (message.thread_id or message.reply_to or "").split("/")[0]
        if "/" in conversation_id and root:
            path = f"{base}/messages/{root}/replies"
        elif root:  # a chat has no threads: a reply quotes its target
            ref = {"id": root, "contentType": "messageReference", "content": json.dumps({"messageId": root})}
            body["attachments"] = [ref]
            body["body"]["content"] = f'<attachment id="{root}"></attachment>' + body["body"]["content"]
        self._sending += 1
        if self._sending == 1:
            self._sends_done = anyio.Event()
        try:
            sent = await self.graph.request("POST", path, json=body)
            if isinstance(sent, dict) and isinstance(sent.get("id"), str):
                self.sent[sent["id"]] = message.txn_id
        finally:
            self._sending -= 1
            if not self._sending:
                self._sends_done.set()
        if not isinstance(sent, dict) or not isinstance(sent.get("id"), str):
            raise PermanentError("Microsoft Graph answered a send without a message id")
        remote_id = f"{root}/{sent['id']}" if "/" in conversation_id and root else sent["id"]
        while len(self.sent) > SENT_MAX:
            self.sent.popitem(last=False)
        stamp = sent.get("createdDateTime")
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        return SendResult(remote_id=remote_id, **({"timestamp": when} if when else {}))

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        path = chat_message_path(conversation_id, target_id, "edits")
        await self.graph.request("PATCH", path, json={"body": message_body(message)["body"]})
        return SendResult(remote_id=target_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        await self.graph.request(
            "POST", chat_message_path(conversation_id, target_id, "deletes") + "/softDelete"
        )

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        path = chat_message_path(conversation_id, target_id, "reactions")
        verb = "setReaction" if action == ReactionAction.ADD else "unsetReaction"
        await self.graph.request("POST", f"{path}/{verb}", json={"reactionType": emoji})

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        if "/" in conversation_id:
            raise NotSupported("read_receipts", network=NETWORK, hint="Graph marks only chats read")
        account = self.tokens.account or {}
        tenant = str(account.get("home_account_id", ".")).partition(".")[2] or self.settings.tenant
        user = {"id": self.self_id, "tenantId": tenant}
        await self.graph.request(
            "POST", f"{conversation_path(conversation_id)}/markChatReadForUser", json={"user": user}
        )

    # --- state sync ---------------------------------------------------------------------------------

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        """Chats and followed channels with their members, and every change since the committed cursors
        (or the latest page of a conversation seen for the first time) as history (``sync.py``)."""
        from .sync import snapshot

        return await snapshot(self, cursor)
