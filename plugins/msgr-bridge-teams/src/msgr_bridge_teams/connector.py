"""The Teams connector: adapts Graph (``client.py``), msal (``auth.py``), receiving (``receive.py``: polling,
and change notifications through the bridge's hook route, ``notify.py``) and outbound requests
(``outbound.py``) to the bridge's connector contract.

Conversation ids are Graph's chat ids (``19:…@thread.v2``, ``19:…@unq.gbl.spaces``) for 1:1 and group chats,
and ``<team id>/<channel id>`` for channels; a channel reply's id is ``<root id>/<reply id>``. Sending raises
``RateLimited(retry_after)`` on Graph's throttling, so the outbox waits.
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
)
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload
from msgr_bridge.errors import AuthenticationFailed
from msgr_bridge.schema import Event, ReactionAction

from .auth import Tokens
from .channels import Entry
from .client import Graph
from .config import CAPABILITIES, SECRET_TOKEN_CACHE, TeamsSettings, TeamsSettingsModel
from .convert import NETWORK, convert
from .files import upload
from .notify import Notifications
from .outbound import conversation_path, message_body, message_path
from .pending import Pending
from .poll import Known
from .receive import STATE_CHANNELS, STATE_CURSORS, Receiving

CHANNEL_CAPS = CAPABILITIES.model_copy(update={"read_receipts": False, "history_catchup": False})
"""Channels: as chats, but Graph has no read marks for them and they are caught up through delta."""


class TeamsConnector(Receiving, BaseConnector):
    network: ClassVar[str] = NETWORK
    display_name: ClassVar[str] = "Microsoft Teams"
    version: ClassVar[str] = "0.1.0"
    settings_model: ClassVar[type[TeamsSettingsModel]] = TeamsSettingsModel
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    """Chats (1:1 and group). Graph has no typing API and no per-message read receipts (marking a chat read
    is the receipt). Files sent are uploaded to a drive first (``files.py``, up to 250 MB each); received
    files come as references. Channels (``CHANNEL_CAPS``): the same but no read marks (Graph has none for
    channels) and no history import. The rate is a conservative share of
    Graph's per-user Teams limits."""
    link_callback: ClassVar[bool] = True
    """The link flow gets the bridge's OAuth redirect URI (``link_callback_url``) for the auth-code flow."""

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
        self.folders: dict[str, tuple[str, str]] = {}
        """Where files go: "" (the OneDrive chat folder) or a channel -> (drive id, folder id)."""
        self.notes = Notifications(self)
        self.pending = Pending(ctx.state, self.sent)
        self._wake = anyio.Event()
        self._stopped = False
        self._sending = 0
        self._sends_done = anyio.Event()

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        from .link import TeamsLinkFlow
        from .link_code import AuthCodeLinkFlow

        if str(settings.get("flow") or "device_code") == "auth_code":
            return AuthCodeLinkFlow(settings)
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
        self._stopped, self._wake = False, anyio.Event()
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
        await self.pending.load()
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
        self.poke()
        self.notes.close()
        with anyio.CancelScope(shield=True):  # a stop during cancellation still closes the sessions
            await self.graph.close()
        self.tokens.close()

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
        if message.attachments:  # uploaded first: the message refers to the files (files.py)
            refs = await upload(self, conversation_id, message)
            body["attachments"] = [*body.get("attachments", []), *refs]
            body["body"]["content"] += "".join(f'<attachment id="{r["id"]}"></attachment>' for r in refs)
        await self.pending.before(message.txn_id, conversation_id, body["body"]["content"])
        self._sending += 1
        if self._sending == 1:
            self._sends_done = anyio.Event()
        sent: Any = None
        try:
            sent = await self.graph.request("POST", path, json=body)
        except (RateLimited, PermanentError, AuthenticationFailed):  # Graph answered: nothing was made
            await self.pending.after(message.txn_id, None)
            raise
        finally:
            sent_id = sent.get("id") if isinstance(sent, dict) else None
            if isinstance(sent_id, str):
                self.pending.remember(sent_id, message.txn_id)
            self._sending -= 1
            if not self._sending:
                self._sends_done.set()
        if not isinstance(sent_id, str):
            raise PermanentError("Microsoft Graph answered a send without a message id")
        await self.pending.after(message.txn_id, sent_id)
        remote_id = f"{root}/{sent_id}" if "/" in conversation_id and root else sent_id
        stamp = sent.get("createdDateTime")
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        return SendResult(remote_id=remote_id, **({"timestamp": when} if when else {}))

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        path = message_path(conversation_id, target_id)
        await self.graph.request("PATCH", path, json={"body": message_body(message)["body"]})
        return SendResult(remote_id=target_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        await self.graph.request("POST", message_path(conversation_id, target_id) + "/softDelete")

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        path = message_path(conversation_id, target_id)
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
