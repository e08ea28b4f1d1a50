"""The Telegram connector: one user account through MTProto (Telethon), adapted to the connector contract.

Lifecycle: ``connect()`` opens the stored session (a ``StringSession`` from the credential layer) and
checks it; a terminated one raises ``AuthenticationFailed``. From then on Telethon hands every update to
the ``Inbox`` (``receive.py``), which keeps them until ``subscribe()`` runs (the core's catch-up through
``sync_state`` is committed first, so the stored update state never jumps past a gap), then pushes each
(an album's messages as one, ``album.py``) with an ack that advances the stored state. ``subscribe()``
ends with ``TransientError`` when the connection drops, and checks the session every ``liveness_s``: a
revoked one turns the account ``bad_credentials``; a server ``pts`` ahead of what arrived, twice in a
row, is a deaf connection and is reconnected.

Secret chats are not supported: they exist only on the device that started them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from telethon import TelegramClient, errors, events
from telethon.tl import functions, types

from msgr_bridge import (
    Account,
    AuthenticationFailed,
    BaseConnector,
    Capabilities,
    OutboundMessage,
    PermanentError,
    SendResult,
    SyncSnapshot,
    TransientError,
)
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload
from msgr_bridge.schema import Event, ReactionAction

from . import catchup
from .album import Albums
from .client import (
    already_sent,
    build_client,
    message_id,
    outgoing_text,
    peer_of,
    random_id,
    reply_header,
    sent_id,
    wire_errors,
)
from .config import (
    CAPABILITIES,
    SECRET_API_HASH,
    SECRET_LINK_STATE,
    SECRET_SESSION,
    TelegramSettings,
    test_server,
)
from .convert import convert
from .fields import NETWORK
from .media import MediaStore, send_files
from .receive import Inbox
from .state import COMMON, UpdateLedger, UpdateState
from .updates import UpdateRouter


class TelegramConnector(BaseConnector):
    network: ClassVar[str] = NETWORK
    settings_model: ClassVar[type[TelegramSettings]] = TelegramSettings
    """Checks ``[networks.telegram]`` and each account's settings at link time and every start."""
    display_name: ClassVar[str] = "Telegram"
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    """Cloud chats only: secret chats (end-to-end, one device) are not bridged. Files of any type up to
    ``max_file_bytes`` (default 50 MiB, the declared size; Telegram's own limit is 2000 MiB), one file
    per Telegram message. Edits of others' messages and edits after 48 hours are refused by
    Telegram. About one message a second per chat (20 a minute in groups) before FLOOD_WAIT."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.settings = TelegramSettings.from_mapping(ctx.settings)
        self.client: TelegramClient | None = None
        self.router = UpdateRouter(0)
        self.ledger = UpdateLedger(ctx.state)
        self.inbox = Inbox(ctx.sink, self.ledger, self.router, self.settings.buffer_max, self.log)
        self.files = MediaStore(ctx, self.settings.max_file_bytes, self._client, self.log)
        self.albums = Albums(ctx.state, self.router.anchors)
        self.inbox.files, self.inbox.albums = self.files.keep, self.albums
        self._stopped = False
        self._deaf_checks = 0

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        from .link import TelegramLinkFlow

        return TelegramLinkFlow(settings)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return convert(payload, account)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.client is not None:
            await self.disconnect()
        self._stopped = False
        self.inbox.reset()
        session = await self.ctx.secrets.get_optional(SECRET_SESSION)
        if not session:
            raise AuthenticationFailed("no Telegram session is stored", hint="link the account again")
        api_hash = self.settings.api_hash or await self.ctx.secrets.get(SECRET_API_HASH)
        test_server()  # trusts the fake's key when the operator points the bridge at one
        client = build_client(session, self.settings.api_id, api_hash, self.settings)
        client.add_event_handler(self.inbox.on_update, events.Raw)
        self.client = client
        try:
            async with wire_errors("connect to Telegram"):
                await client.connect()
                await client(functions.updates.GetStateRequest())  # 401 when the session was terminated
                me = await client.get_me()
        except BaseException:
            self.client = None
            await client.disconnect()
            raise
        self.router.self_id = me.id
        await self.ledger.load()
        self.log.info("telegram.connected", user_id=me.id)

    async def subscribe(self) -> None:
        if self._stopped:
            return
        client = self.client
        if client is None:
            raise TransientError("Telegram subscribe() called before connect()")
        await self.inbox.open()
        if self.inbox.overflow:
            raise TransientError("too many Telegram updates came before the bridge was ready; reconnecting")
        while self._serving(client):
            ended, _ = await asyncio.wait({client.disconnected}, timeout=self.settings.liveness_s)
            if not self._serving(client):  # disconnect() was called meanwhile
                return
            if not ended:
                await self._check_liveness(client)
                continue
            error = client.disconnected.exception() if not client.disconnected.cancelled() else None
            raise TransientError(f"lost the connection to Telegram ({error!r})")

    def _serving(self, client: TelegramClient) -> bool:
        return self.client is client and not self._stopped

    async def _check_liveness(self, client: TelegramClient) -> None:
        async with wire_errors("check the Telegram session"):
            state = await client(functions.updates.GetStateRequest())
        behind = state.pts > self.ledger.seen(COMMON)
        self._deaf_checks = self._deaf_checks + 1 if behind else 0
        if self._deaf_checks >= 2:
            raise TransientError("Telegram has updates this connection did not deliver; reconnecting")

    async def disconnect(self) -> None:
        self._stopped = self.inbox.closed = True
        client, self.client = self.client, None
        if client is not None:
            client.remove_event_handler(self.inbox.on_update)
            with contextlib.suppress(Exception):
                await client.disconnect()

    # --- catch-up -----------------------------------------------------------------------------------

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        client = self._client()
        if cursor:
            await self.ledger.adopt(UpdateState.from_json(cursor))
        found = await catchup.dialogs(client)
        linked = UpdateState.from_json(await self.ctx.secrets.get_optional(SECRET_LINK_STATE))
        result = await catchup.catch_up(
            client,
            self.ledger.committed,
            self.router,
            found,
            linked=linked,  # where a first sync starts (the state read when the account was linked)
            history_import=self.settings.history_import,
            log=self.log,
            progress=self.ctx.progress,
        )
        for message, item in result.files:  # files missed while down, stored like live ones
            await self.files.keep(message, item)
        history = await self.albums.merge(result.history)
        # Buffered live updates up to this state came in the history: only when a difference was fetched.
        self.inbox.caught_up = result.state if result.fetched else None
        self.ledger.saw(result.state)
        return SyncSnapshot(
            contacts=await catchup.contacts(client, self.ctx.account.id, self.router.self_id),
            conversations=catchup.conversations(found, self.ctx.account.id),
            history=tuple(history),
            cursor=result.state.as_json_text(),
            complete=result.complete,
        )

    # --- outbound -----------------------------------------------------------------------------------

    def _client(self) -> TelegramClient:
        if self.client is None or not self.client.is_connected():
            raise TransientError("not connected to Telegram")
        return self.client

    async def _peer(self, conversation: str) -> Any:
        client, peer = self._client(), peer_of(conversation)
        try:
            return await client.get_input_entity(peer)
        except ValueError:
            await catchup.dialogs(client)  # learns the access hashes of every dialog
        try:
            return await client.get_input_entity(peer)
        except ValueError:
            raise PermanentError(f"Telegram conversation {conversation} is unknown to this account") from None

    async def _call(self, action: str, request: Any, peer: Any) -> Any:
        async with wire_errors(action):
            result = await self._client()(request)
        await self.inbox.own(result, peer.channel_id if isinstance(peer, types.InputPeerChannel) else COMMON)
        return result

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        if message.attachments:
            return await send_files(self, conversation_id, message)
        peer = await self._peer(conversation_id)
        text, entities = outgoing_text(message)
        rid = random_id(message.txn_id)
        self.router.expect(rid, message.txn_id)
        request = functions.messages.SendMessageRequest(
            peer,
            text,
            random_id=rid,
            reply_to=reply_header(message),
            entities=entities or None,
            no_webpage=True,
        )
        try:
            result = await self._call("send a message", request, peer)
        except TransientError as exc:
            if not isinstance(exc.__cause__, errors.RandomIdDuplicateError):
                raise  # else a retry of a send that went out:
            return await already_sent(self._client(), peer, text, message.txn_id)
        sent = sent_id(result, rid)
        self.router.sent(conversation_id, sent, message.txn_id)
        return SendResult(remote_id=str(sent))

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        peer = await self._peer(conversation_id)
        text, entities = outgoing_text(message)
        request = functions.messages.EditMessageRequest(
            peer, message_id(target_id), message=text, entities=entities or None, no_webpage=True
        )
        await self._call("edit a message", request, peer)
        return SendResult(remote_id=target_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        peer, ids = await self._peer(conversation_id), [message_id(target_id)]
        if isinstance(peer, types.InputPeerChannel):
            request: Any = functions.channels.DeleteMessagesRequest(peer, ids)
        else:  # revoke: deleted for everyone, not only for us
            request = functions.messages.DeleteMessagesRequest(ids, revoke=True)
        await self._call("delete a message", request, peer)

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        peer = await self._peer(conversation_id)
        chosen = [types.ReactionEmoji(emoji)] if action == ReactionAction.ADD else []
        async with wire_errors("react"):
            await self._client()(
                functions.messages.SendReactionRequest(peer, message_id(target_id), reaction=chosen)
            )

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        peer, up_to = await self._peer(conversation_id), message_id(up_to_id)
        if isinstance(peer, types.InputPeerChannel):
            request: Any = functions.channels.ReadHistoryRequest(peer, up_to)
        else:
            request = functions.messages.ReadHistoryRequest(peer, up_to)
        await self._call("mark messages read", request, peer)

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        peer = await self._peer(conversation_id)
        action = types.SendMessageTypingAction() if active else types.SendMessageCancelAction()
        async with wire_errors("send typing"):
            await self._client()(functions.messages.SetTypingRequest(peer, action))
