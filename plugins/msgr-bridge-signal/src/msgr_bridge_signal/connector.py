"""The Signal connector: a linked device of the person's account, through signal-cli-rest-api.

``connect()`` checks that the number is still linked (``/v1/accounts``; a missing number is
``AuthenticationFailed``, so the account turns ``bad_credentials``) and asks ``/v1/about`` which mode the
REST API runs in. ``subscribe()`` reads the json-rpc websocket (``/v1/receive/{number}``), or polls the same
path in normal mode, and pushes every ``{"envelope", "account"}`` it gets; attachments are streamed into the
core's storage first (``ctx.media.receive``), and a sync message whose timestamp is one of our own sends
carries our ``txn_id``, so the echo is stored once. While nothing arrives, the link is re-checked every
``liveness_interval_s``. Signal keeps no history on its servers: ``sync_state`` gives contacts and groups.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp

from msgr_bridge.connectors.base import BaseConnector
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload, SyncSnapshot
from msgr_bridge.errors import AuthenticationFailed, BridgeError, PermanentError, TransientError
from msgr_bridge.schema import (
    Account,
    Capabilities,
    Contact,
    Conversation,
    ConversationKind,
    Event,
    OutboundMessage,
    ReactionAction,
    SendResult,
)

from .client import ChallengeRequired, SignalApi
from .config import CAPABILITIES, SignalSettings
from .convert import NETWORK, convert, message_id
from .inbound import Inbound
from .outbound import recipient, send_body, target
from .styles import text_fields

POLL_IDLE_S = 1.0


class SignalConnector(BaseConnector):
    network: ClassVar[str] = NETWORK
    display_name: ClassVar[str] = "Signal"
    version: ClassVar[str] = "0.1.0"
    settings_model: ClassVar[type[SignalSettings]] = SignalSettings
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.settings = SignalSettings.from_mapping(ctx.settings)
        self.number = self.settings.number or ctx.account.remote_user_id
        self.api: SignalApi | None = None
        self.mode = "json-rpc"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopped = False
        self._wake = asyncio.Event()
        self.inbound = Inbound(ctx, self.settings, self.number, self.log)

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        from .link import SignalLinkFlow

        return SignalLinkFlow(settings)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return convert(payload, account)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.api is not None:
            await self.disconnect()
        self._stopped = False
        self._wake = asyncio.Event()
        api = SignalApi(self.settings, self.number)
        try:
            await self._check_linked(api)
            self.mode = str((await api.about()).get("mode") or "json-rpc")
        except BaseException:
            await api.close()
            raise
        self.api = api
        self.log.info("signal.connected", mode=self.mode, base_url=self.settings.base_url)

    async def _check_linked(self, api: SignalApi) -> None:
        if self.number not in await api.accounts():
            raise AuthenticationFailed(
                f"{self.number} is no longer linked to signal-cli-rest-api at {self.settings.base_url}",
                hint="the device was removed in the phone's Linked devices (or the REST API lost its data); "
                "link the account again",
            )

    async def subscribe(self) -> None:
        if self._stopped:
            return
        api = self.api
        if api is None:
            raise TransientError("Signal subscribe() called before connect()")
        receive = self.settings.receive
        websocket = receive == "websocket" or (receive == "auto" and self.mode.startswith("json-rpc"))
        try:
            if websocket:
                await self._receive_websocket(api)
            else:
                await self._receive_polling(api)
        except (BridgeError, aiohttp.ClientError, TimeoutError):
            if self.stopped():
                return
            raise

    async def _receive_websocket(self, api: SignalApi) -> None:
        async with api.websocket() as ws:
            self._ws = ws
            while not self._stopped:
                try:
                    frame = await ws.receive(timeout=self.settings.liveness_interval_s)
                except TimeoutError:
                    await self._check_linked(api)  # quiet for long: is the device still linked?
                    continue
                if frame.type == aiohttp.WSMsgType.TEXT:
                    await self.inbound.handle(api, frame.data, self.stopped)
                elif frame.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    if self.stopped():
                        return
                    raise TransientError("signal-cli-rest-api closed the receive websocket")

    async def _receive_polling(self, api: SignalApi) -> None:
        checked = asyncio.get_running_loop().time()
        while not self._stopped:
            items = await api.poll()
            for item in items:
                await self.inbound.handle(api, item, self.stopped)
            now = asyncio.get_running_loop().time()
            if now - checked > self.settings.liveness_interval_s:
                await self._check_linked(api)
                checked = now
            if not items:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_IDLE_S)

    async def disconnect(self) -> None:
        self._stopped = True
        self._wake.set()
        ws, self._ws = self._ws, None
        api, self.api = self.api, None
        if ws is not None:
            await ws.close()
        if api is not None:
            await api.close()

    # --- outbound ----------------------------------------------------------------------------------------

    def stopped(self) -> bool:
        return self._stopped

    def _connected(self) -> SignalApi:
        if self.api is None:
            raise TransientError("not connected to signal-cli-rest-api")
        return self.api

    async def _send(self, body: dict[str, Any], txn_id: str, conversation_id: str) -> SendResult:
        try:
            stamp = await self._connected().send(body)
        except ChallengeRequired as exc:  # the operator's turn: an alert, and the send fails (no retry loop)
            self.log.error("signal.challenge_required", number=self.number, tokens=exc.tokens, todo=exc.hint)
            raise
        await self.inbound.remember(stamp, txn_id, conversation_id)
        return SendResult(remote_id=message_id(stamp, self.number), timestamp=_when(stamp))

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        if not message.text and not message.attachments:
            raise PermanentError("a Signal message needs text or an attachment")
        limit = self.settings.max_attachment_bytes
        body = await send_body(conversation_id, message, self.ctx.media, limit)
        return await self._send(body, message.txn_id, conversation_id)

    def _own(self, target_id: str, what: str) -> int:
        stamp, author = target(target_id)
        if author != self.number:
            raise PermanentError(f"Signal lets {self.number} {what} only its own messages, not {author}'s")
        return stamp

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        stamp = self._own(target_id, "edit")
        body = {"recipients": [recipient(conversation_id)], **text_fields(message), "edit_timestamp": stamp}
        return await self._send(body, message.txn_id, conversation_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        stamp = self._own(target_id, "delete")
        await self._connected().remote_delete(recipient(conversation_id), stamp)

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        stamp, author = target(target_id)
        remove = action == ReactionAction.REMOVE
        await self._connected().reaction(recipient(conversation_id), emoji, author, stamp, remove=remove)

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        recipient(conversation_id)
        stamp, author = target(up_to_id)
        if author != self.number:  # a read receipt goes to the message's author
            await self._connected().receipt(author, stamp)

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        await self._connected().typing(recipient(conversation_id), active)

    # --- state -------------------------------------------------------------------------------------------

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        """Contacts and groups as signal-cli knows them; Signal keeps no history to fetch."""
        api = self._connected()
        account = self.ctx.account.id
        contacts = []
        for c in await api.contacts():
            who = c.get("number") or c.get("uuid")
            if isinstance(who, str) and who:
                name = c.get("name") or c.get("profile_name") or None
                display = name if isinstance(name, str) else None
                contacts.append(
                    Contact(
                        network=NETWORK,
                        account_id=account,
                        remote_id=who,
                        display_name=display,
                        is_self=who == self.number,
                    )
                )
        conversations = []
        for g in await api.groups():
            members = tuple(m for m in g.get("members") or () if isinstance(m, str))
            name = g.get("name") if isinstance(g.get("name"), str) else None
            if isinstance(g.get("id"), str):
                conversations.append(
                    Conversation(
                        network=NETWORK,
                        account_id=account,
                        remote_id=g["id"],
                        name=name,
                        type=ConversationKind.GROUP,
                        members=members,
                    )
                )
        return SyncSnapshot(
            contacts=tuple(contacts), conversations=tuple(conversations), cursor=cursor, complete=False
        )


def _when(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp / 1000, UTC)
