"""The loopback connector: the adapter between the core and a ``LoopbackNetwork``.

It shows the whole contract in a page: the class takes its network, capabilities, settings model, link flow
and pure ``convert`` from the plugin's light description (``__init__.py``), then the
connect/subscribe/disconnect lifecycle, outbound actions that use the transaction id, and catch-up through
``sync_state``. Settings: ``network`` (the network instance name, default ``"default"``), or ``url``
(``ws://127.0.0.1:PORT/``: a network hosted in another process by ``remote.RemoteNetworkServer``, whose
deliveries are acknowledged after the bridge commits them). Secrets: ``password``.
"""

from __future__ import annotations

from msgr_bridge import (
    BaseConnector,
    SyncSnapshot,
)
from msgr_bridge.connectors.protocol import Ack
from msgr_bridge.errors import TransientError
from msgr_bridge.schema import (
    Contact,
    Conversation,
    ConversationKind,
    OutboundMessage,
    ReactionAction,
    SendResult,
)
from msgr_bridge.sdk.settings import settings_of

from . import DESCRIPTION
from .config import LoopbackSettings
from .network import LoopbackNetwork, Payload, Session
from .remote import RemoteClient


class LoopbackConnector(BaseConnector, description=DESCRIPTION):
    session: Session | None = None
    remote: RemoteClient | None = None
    """Set while connected to a remote network (settings carry ``url``)."""
    stopped: bool = False
    """Set by ``disconnect()``, cleared by ``connect()``: a ``subscribe()`` that starts in between (the
    supervisor stopped the account before the task's first step) returns instead of finding no session."""

    @property
    def net(self) -> LoopbackNetwork:
        return LoopbackNetwork.get(self.settings.network)

    @property
    def me(self) -> str:
        return self.ctx.account.remote_user_id

    @property
    def settings(self) -> LoopbackSettings:
        return settings_of(self.ctx, LoopbackSettings)

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        return self.settings.url

    async def connect(self) -> None:
        self.stopped = False
        if self.url is not None:
            client = RemoteClient(self.url)
            try:
                await client.login(self.me, await self.ctx.secrets.get("password"))
            except BaseException:
                await client.close()
                raise
            self.remote = client
            return
        self.net.authenticate(self.me, await self.ctx.secrets.get("password"))
        self.session = self.net.open_session(self.me)

    async def subscribe(self) -> None:
        if self.stopped:
            return  # disconnect() came first: nothing to receive, and the core no longer listens
        if self.remote is not None:
            await self._subscribe_remote(self.remote)
            return
        session = self.session
        if session is None:
            raise TransientError("subscribe() before connect()")
        try:
            while True:
                payload = await session.receive()
                await self.ctx.sink.push(payload)
        except EOFError:
            return  # closed by disconnect()

    async def _subscribe_remote(self, client: RemoteClient) -> None:
        try:
            while True:
                payload = await client.receive()
                await self.ctx.sink.push(payload, ack=_acker(client, payload))
        except EOFError:
            return

    async def disconnect(self) -> None:
        self.stopped = True
        if self.remote is not None:
            remote, self.remote = self.remote, None
            await remote.close()
        if self.session is not None:
            self.net.close_session(self.session)
            self.session = None

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        after = int(cursor) if cursor else 0
        if self.remote is not None:
            return await self._sync_remote(self.remote, after)
        net = self.net
        history = net.history(self.me, after, limit=self.settings.history_page)
        conversations = tuple(
            Conversation(
                network=self.network,
                account_id=self.ctx.account.id,
                remote_id=c.id,
                name=c.name or None,
                type=ConversationKind.DIRECT if c.type == "direct" else ConversationKind.GROUP,
                members=tuple(sorted(c.members)),
            )
            for c in net.conversations.values()
            if self.me in c.members
        )
        known = {m for c in conversations for m in c.members}
        contacts = tuple(
            Contact(
                network=self.network,
                account_id=self.ctx.account.id,
                remote_id=u,
                display_name=net.users.get(u),
                is_self=u == self.me,
            )
            for u in sorted(known)
        )
        new_cursor = str(history[-1]["seq"]) if history else str(max(after, net.last_seq()))
        return SyncSnapshot(
            contacts=contacts,
            conversations=conversations,
            history=tuple(history),
            cursor=new_cursor,
            complete=len(history) < self.settings.history_page,
        )

    async def _sync_remote(self, client: RemoteClient, after: int) -> SyncSnapshot:
        directory = await client.request("directory")
        history: list[Payload] = await client.request(
            "history", after_seq=after, limit=self.settings.history_page
        )
        conversations = tuple(
            Conversation(
                network=self.network,
                account_id=self.ctx.account.id,
                remote_id=c["id"],
                name=c["name"] or None,
                type=ConversationKind.DIRECT if c["type"] == "direct" else ConversationKind.GROUP,
                members=tuple(c["members"]),
            )
            for c in directory["conversations"]
        )
        contacts = tuple(
            Contact(
                network=self.network,
                account_id=self.ctx.account.id,
                remote_id=u,
                display_name=name,
                is_self=u == self.me,
            )
            for u, name in sorted(directory["users"].items())
        )
        last = int(directory["last_seq"])
        new_cursor = str(history[-1]["seq"]) if history else str(max(after, last))
        return SyncSnapshot(
            contacts=contacts,
            conversations=conversations,
            history=tuple(history),
            cursor=new_cursor,
            complete=len(history) < self.settings.history_page,
        )

    # --- outbound -----------------------------------------------------------------------------------

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        if self.remote is not None:
            sent = await self.remote.request(
                "post",
                conversation=conversation_id,
                text=message.text,
                txn_id=message.txn_id,
                reply_to=message.reply_to,
            )
            return SendResult(remote_id=sent["id"])
        self.net.check_fault("send")
        payload = self.net.post(
            conversation_id, self.me, message.text, txn_id=message.txn_id, reply_to=message.reply_to
        )
        return SendResult(remote_id=payload["id"])

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        if self.remote is not None:
            edited = await self.remote.request(
                "edit", conversation=conversation_id, target=target_id, text=message.text
            )
            return SendResult(remote_id=edited["id"])
        self.net.check_fault("edit")
        payload = self.net.edit(conversation_id, self.me, target_id, message.text)
        return SendResult(remote_id=payload["id"])

    async def delete(self, conversation_id: str, target_id: str) -> None:
        if self.remote is not None:
            await self.remote.request("delete", conversation=conversation_id, target=target_id)
            return
        self.net.check_fault("delete")
        self.net.delete(conversation_id, self.me, target_id)

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        if self.remote is not None:
            remove = action == ReactionAction.REMOVE
            await self.remote.request(
                "react", conversation=conversation_id, target=target_id, emoji=emoji, remove=remove
            )
            return
        self.net.check_fault("react")
        self.net.react(conversation_id, self.me, target_id, emoji, remove=action == ReactionAction.REMOVE)

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        if self.remote is not None:
            await self.remote.request("read", conversation=conversation_id, target=up_to_id)
            return
        self.net.check_fault("read")
        self.net.read(conversation_id, self.me, up_to_id)

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        if self.remote is not None:
            await self.remote.request("typing", conversation=conversation_id, active=active)
            return
        self.net.typing(conversation_id, self.me, active)


def _acker(client: RemoteClient, payload: Payload) -> Ack:
    seq = payload.get("seq")

    async def ack() -> None:
        if isinstance(seq, int):
            await client.ack(seq)

    return ack
