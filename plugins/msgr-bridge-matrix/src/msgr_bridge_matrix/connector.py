"""The Matrix connector: the user's own account over the client-server API (puppeting, not an appservice).

Settings (``ctx.settings``): ``homeserver`` (client-server API base URL, required), ``user_id`` (full
``@user:server`` or a localpart, for password logins), ``timeline_limit`` (events per room per sync,
default 50), ``max_backfill`` (events fetched through ``/messages`` to close one gap, default 1000),
``auto_join_from`` (inviters whose invites are joined, including invites that arrived while the bridge
was offline: ``@user:server``, ``*:server`` or ``*``; default none; see ``invites.py``),
``auto_join_invites`` (false turns auto-join off whatever ``auto_join_from`` says). An invite not joined
is only reported (a ``MembershipChange`` with action ``invite``) and the room stays unjoined.
Secrets (``ctx.secrets``): ``access_token`` and/or ``password``; ``device_id``. After a password login the
new ``access_token`` and ``device_id`` are stored, so later connects reuse that device instead of
creating a new one each time.

State (``ctx.state``): ``next_batch`` is the sync token up to which every event has been committed by the
inbound pipeline (each push carries an ack; see ``committed.py``), so a crash between push and commit
resumes before those events (the store keeps each once) instead of after them.
``reactions`` / ``own_reactions`` are the bounded reaction maps of ``timeline.RoomMemory``; ``invites``
holds the invites still to join and the refused ones (``invites.InviteJoiner``).

Attachments: outbound bytes come from the core (``ctx.media.open``: share-link storage, or a remote URL
the operator allows), streamed into the homeserver upload; the connector never opens a file or fetches a
URL itself. Inbound attachments carry their ``mxc://`` URL; ``store_media`` streams one into the core's
media storage (``ctx.media.receive``).

End-to-end encryption is not supported (``e2ee=False``): ``m.room.encrypted`` events are skipped with an
info log line ``matrix.encrypted_event_skipped`` instead of being quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from mautrix.api import Method
from mautrix.client import Client
from mautrix.types import DeviceID, UserID

from msgr_bridge import BaseConnector, ConnectorContext, SyncSnapshot
from msgr_bridge.connectors.protocol import StoredMedia
from msgr_bridge.errors import AuthenticationFailed, PermanentError
from msgr_bridge.schema import (
    Account,
    Attachment,
    AttachmentRule,
    Capabilities,
    Event,
    OutboundMessage,
    ReactionAction,
    SendResult,
)

from . import client as wire
from .committed import CommittedToken
from .content import add_relations, edit_content, media_content, text_content
from .convert import PART_SEPARATOR, convert
from .invites import InviteJoiner, parse_auto_join_from
from .link import MatrixLinkFlow
from .snapshot import room_snapshot
from .sync_response import sync_payloads
from .timeline import RoomMemory, own_reaction_key

SYNC_TIMEOUT_MS = 30_000


def _q(part: str) -> str:
    """Percent-encode one path segment (room ids contain ``!`` and ``:``, event ids may contain ``/``)."""
    return quote(part, safe="")


class MatrixConnector(BaseConnector):
    network: ClassVar[str] = "matrix"
    display_name: ClassVar[str] = "Matrix"
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = Capabilities(
        send=True,
        formatted_text=True,
        edits=True,
        deletes=True,
        reactions=True,
        replies=True,
        threads=True,
        read_receipts=True,
        typing=True,
        max_text_length=16_000,  # an event is at most 64 KiB of JSON, body and formatted body together
        attachments=(AttachmentRule(mime_pattern="*/*"),),  # max_size: the server's m.upload.size, on connect
        history_catchup=True,
        e2ee=False,
        echoes_own_sends=True,  # /sync returns our own events with unsigned.transaction_id
    )

    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self.client: Client | None = None
        self.user_id = ctx.account.remote_user_id
        self.memory = RoomMemory(self.user_id, self.log)
        self.invites = InviteJoiner(self.user_id, self.log)
        self._auto_join = True
        self._caps = self.capabilities
        self._next_batch: str | None = None
        self._committed = CommittedToken(self._save_token)
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- class level --------------------------------------------------------------------------------

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> MatrixLinkFlow:
        return MatrixLinkFlow(settings)

    @staticmethod
    def convert(payload: Mapping[str, Any], account: Account) -> Sequence[Event]:
        return convert(payload, account)

    def conversation_capabilities(self, conversation_id: str) -> Capabilities:
        return self._caps

    # --- lifecycle ----------------------------------------------------------------------------------

    def _setting_int(self, key: str, default: int) -> int:
        value = self.ctx.settings.get(key, default)
        return value if isinstance(value, int) and value > 0 else default

    def _setting_bool(self, key: str, default: bool) -> bool:
        value = self.ctx.settings.get(key, default)
        if isinstance(value, str):
            value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
                value.strip().lower(), value
            )
        if not isinstance(value, bool):
            raise PermanentError(
                f"matrix setting {key} must be true or false, got {value!r}",
                hint=f"fix the account's {key} setting",
            )
        return value

    @property
    def _filter(self) -> str:
        limit = self._setting_int("timeline_limit", 50)
        return json.dumps({"room": {"timeline": {"limit": limit}}, "presence": {"types": []}})

    def _api(self) -> Client:
        if self.client is None:
            raise PermanentError("the matrix connector is not connected", hint="call connect() first")
        return self.client

    async def connect(self) -> None:
        """Log in (access token first, then password) and read the server's upload limit."""
        homeserver = self.ctx.settings.get("homeserver")
        if not isinstance(homeserver, str) or not homeserver:
            raise AuthenticationFailed("no matrix homeserver configured", hint="relink the account")
        self._stop = asyncio.Event()
        self.client = client = wire.make_client(homeserver, sync_timeout_s=SYNC_TIMEOUT_MS / 1000)
        try:
            session = await self._authenticate(client)
        except BaseException:
            await wire.close_client(client)
            self.client = None
            raise
        client.mxid = UserID(session.user_id)
        client.device_id = DeviceID(session.device_id)
        self.user_id = session.user_id
        self.memory = RoomMemory(self.user_id, self.log)
        self.memory.load(await self.ctx.state.get("reactions"), await self.ctx.state.get("own_reactions"))
        self._auto_join = self._setting_bool("auto_join_invites", True)
        self.invites = InviteJoiner(
            self.user_id, self.log, allowed=parse_auto_join_from(self.ctx.settings.get("auto_join_from"))
        )
        self.invites.load(await self.ctx.state.get("invites"))
        async with wire.wire_errors("media config"):
            upload_size = (await client.get_media_repo_config()).upload_size
        self._caps = self.capabilities.model_copy(
            update={"attachments": (AttachmentRule(mime_pattern="*/*", max_size=upload_size),)}
        )
        self.log.info("matrix.connected", user_id=self.user_id, device_id=session.device_id)

    async def _authenticate(self, client: Client) -> wire.Session:
        secrets = self.ctx.secrets
        token = await secrets.get_optional("access_token")
        password = await secrets.get_optional("password")
        if token:
            try:
                return await wire.login_token(client, token)
            except AuthenticationFailed:
                if not password:
                    raise
                client.api.token = ""
                self.log.info("matrix.token_refused_relogin")
        if not password:
            raise AuthenticationFailed("no matrix access token or password stored", hint="relink the account")
        user = self.ctx.settings.get("user_id") or self.ctx.account.remote_user_id
        session = await wire.login_password(
            client, str(user), password, await secrets.get_optional("device_id")
        )
        await secrets.put("access_token", session.access_token)
        await secrets.put("device_id", session.device_id)
        return session

    async def disconnect(self) -> None:
        """End a running ``subscribe()`` (it finishes the batch in hand and returns), then log off."""
        self._stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 10)
        if self.client is not None:
            client, self.client = self.client, None
            await wire.close_client(client)

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        """One sync from the stored token (or ``cursor``): everything since then is returned as history,
        gaps closed through ``/messages``; plus the joined rooms and their members.

        Without any token (a first connect) the history is the last ``timeline_limit`` events of each room
        and ``complete`` is False. While ``subscribe()`` runs, the live stream is the history: the snapshot
        then has rooms and members only, so the two never hand out the same events.
        """
        client = self._api()
        conversations, contacts = await room_snapshot(client, self.ctx.account, self.user_id, self.memory)
        if not self._idle.is_set():
            return SyncSnapshot(contacts=contacts, conversations=conversations, cursor=self._next_batch)
        since = await self.ctx.state.get("next_batch") or cursor
        try:
            resp = await wire.sync(client, since, 0, self._filter)
        except PermanentError as exc:
            if since is None:
                raise
            self.log.warning("matrix.sync_token_refused", error=str(exc), action="starting a fresh sync")
            since = None
            resp = await wire.sync(client, None, 0, self._filter)
        history, complete = await self._payloads(resp, since, live=False)
        if await self._join_invites(client, resp, full=since is None):  # offline invites: list them too
            conversations, contacts = await room_snapshot(client, self.ctx.account, self.user_id, self.memory)
        self._next_batch = resp["next_batch"]
        return SyncSnapshot(
            contacts=contacts,
            conversations=conversations,
            history=tuple(history),
            cursor=self._next_batch,
            complete=complete and since is not None,
        )

    async def subscribe(self) -> None:
        """Long-poll ``/sync`` until ``disconnect()``; a token is stored once its payloads are committed.

        A ``disconnect()`` that ran before this task's first step (connect, start, stop at once) is a
        clean stop too: it returns at once, as the contract asks, instead of finding no client.
        """
        if self._stop.is_set():
            return
        self._idle.clear()
        try:
            await self._sync_loop(self._api())
        finally:
            self._idle.set()

    async def _save_token(self, token: str) -> None:
        await self.ctx.state.set("next_batch", token)

    async def _sync_loop(self, client: Client) -> None:
        self._committed.retire()  # a previous session's late acks must not store its older tokens
        self._committed = CommittedToken(self._save_token)
        if self._next_batch is None:
            self._next_batch = await self.ctx.state.get("next_batch")
        else:
            await self._save_token(self._next_batch)  # sync_state's history was committed by the core
        while not self._stop.is_set():
            sync_task = asyncio.create_task(
                wire.sync(client, self._next_batch, SYNC_TIMEOUT_MS, self._filter)
            )
            stop_task = asyncio.create_task(self._stop.wait())
            await asyncio.wait({sync_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():
                await wire.cancel(sync_task)
                await wire.cancel(stop_task)
                return
            await wire.cancel(stop_task)
            resp = sync_task.result()  # raises TransientError, AuthenticationFailed, RateLimited
            payloads, _ = await self._payloads(resp, self._next_batch, live=True)
            for payload in payloads:
                await self.ctx.sink.push(payload, ack=self._committed.ack())
            await self._join_invites(client, resp, full=self._next_batch is None)
            self._next_batch = resp["next_batch"]
            await self._save_reactions()
            await self._committed.close(self._next_batch)  # stored once all of the above is committed

    async def _join_invites(self, client: Client, resp: Mapping[str, Any], *, full: bool) -> bool:
        """Join the invites of one sync answer (and retry pending ones); True when a room was joined.

        Runs before the sync token is stored, so a crash in between shows the invite again on restart.
        """
        return self._auto_join and await self.invites.on_sync(client, resp, self.ctx.state, full=full)

    async def _save_reactions(self) -> None:
        if self.memory.reactions_changed:
            await self.ctx.state.set("reactions", self.memory.reactions)
            await self.ctx.state.set("own_reactions", self.memory.own_reactions)
            self.memory.reactions_changed = False

    async def _payloads(
        self, resp: Mapping[str, Any], since: str | None, *, live: bool
    ) -> tuple[list[Any], bool]:
        """Raw payloads of one sync answer (see ``sync_response``); False when a gap stayed open."""
        max_backfill = self._setting_int("max_backfill", 1000)
        return await sync_payloads(
            self._api, self.memory, resp, since, live=live, max_backfill=max_backfill, log=self.log
        )

    # --- outbound -----------------------------------------------------------------------------------

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str) -> str:
        path = f"/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn_id)}"
        resp = await wire.call(self._api(), Method.PUT, path, f"send {event_type}", content=content)
        return str(resp["event_id"])

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        """Text first, then one event per attachment; transaction ids ``txn``, ``txn~1``, ``txn~2``..."""
        contents: list[tuple[str, dict[str, Any]]] = []
        if message.text or not message.attachments:
            contents.append(("m.room.message", add_relations(text_content(message), message)))
        max_size = self._caps.attachments[0].max_size if self._caps.attachments else None
        for attachment in message.attachments:
            url = attachment.url or ""
            size = attachment.size
            if not url.startswith("mxc://"):  # already on the homeserver, else streamed from the core
                async with self.ctx.media.open(attachment, max_bytes=max_size) as media:
                    size = media.size
                    async with wire.wire_errors("media upload"):
                        url = await self._api().upload_media(
                            media.chunks, attachment.mime_type, attachment.name, size
                        )
            contents.append(("m.room.message", media_content(attachment, url, size)))
        if not message.text and message.attachments:
            add_relations(contents[0][1], message)
        ids = []
        for i, (etype, content) in enumerate(contents):
            txn = message.txn_id if i == 0 else f"{message.txn_id}{PART_SEPARATOR}{i}"
            ids.append(await self._send(conversation_id, etype, content, txn))
        return SendResult(remote_id=ids[0], extra_parts=tuple(ids[1:]))

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        event_id = await self._send(
            conversation_id, "m.room.message", edit_content(target_id, message), message.txn_id
        )
        return SendResult(remote_id=event_id)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        path = f"/v3/rooms/{_q(conversation_id)}/redact/{_q(target_id)}/{uuid.uuid4().hex}"
        await wire.call(self._api(), Method.PUT, path, "redaction", content={})

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        """Add: send an ``m.annotation`` (once). Remove: redact our reaction event with that key."""
        key = own_reaction_key(conversation_id, target_id, emoji)
        if action == ReactionAction.ADD:
            if key in self.memory.own_reactions:
                return
            content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target_id, "key": emoji}}
            try:
                sent = await self._send(conversation_id, "m.reaction", content, uuid.uuid4().hex)
            except PermanentError:  # e.g. M_DUPLICATE_ANNOTATION: reacted from another device already
                found = await self._find_own_reaction(conversation_id, target_id, emoji)
                if found is None:
                    raise
                sent = found
            self.memory.remember_reaction(sent, target_id, emoji, self.user_id, conversation_id)
        else:
            own = self.memory.own_reactions.get(key) or await self._find_own_reaction(
                conversation_id, target_id, emoji
            )
            if own is None:
                return  # nothing to remove
            await self.delete(conversation_id, own)
            # the seen entry stays until the redaction comes back, so its echo converts to a removal too
            self.memory.own_reactions.pop(key, None)
            self.memory.reactions_changed = True
        await self._save_reactions()

    async def _find_own_reaction(self, room_id: str, target_id: str, emoji: str) -> str | None:
        """Our reaction with ``emoji`` on ``target_id``, asked from the server (when the map lost it)."""
        path = f"/v1/rooms/{_q(room_id)}/relations/{_q(target_id)}/m.annotation/m.reaction"
        page = await wire.call(self._api(), Method.GET, path, "reaction lookup", query={"limit": "100"})
        for event in page.get("chunk") or []:
            rel = (event.get("content") or {}).get("m.relates_to") or {}
            if event.get("sender") == self.user_id and rel.get("key") == emoji:
                return str(event["event_id"])
        return None

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        path = f"/v3/rooms/{_q(conversation_id)}/receipt/m.read/{_q(up_to_id)}"
        await wire.call(self._api(), Method.POST, path, "read receipt", content={})

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        path = f"/v3/rooms/{_q(conversation_id)}/typing/{_q(self.user_id)}"
        content: dict[str, Any] = {"typing": True, "timeout": 30_000} if active else {"typing": False}
        await wire.call(self._api(), Method.PUT, path, "typing", content=content)

    # --- media --------------------------------------------------------------------------------------

    async def store_media(self, attachment: Attachment) -> StoredMedia:
        """An inbound attachment (its ``url`` is the ``mxc://`` URL) streamed from the homeserver into the
        core's media storage, size capped while reading; returns the share-link URL clients fetch it from."""
        max_size = self._caps.attachments[0].max_size if self._caps.attachments else None
        return await self.ctx.media.receive(
            wire.download_stream(self._api(), attachment.url or ""),
            name=attachment.name,
            mime_type=attachment.mime_type,
            max_bytes=max_size,
        )
