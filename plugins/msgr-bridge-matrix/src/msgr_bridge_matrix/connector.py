"""The Matrix connector: the user's own account over the client-server API (puppeting, not an appservice).

Settings: ``config.MatrixSettings`` (homeserver, user id, ``timeline_limit``, ``max_backfill``,
``auto_join_from``, ``auto_join_invites``), validated by the core when the account is linked and at start.
An invite not joined is only reported (a ``MembershipChange`` with action ``invite``) and the room stays
unjoined (see ``invites.py``).
Secrets (``ctx.secrets``): ``access_token`` and/or ``password``; ``device_id``. After a password login the
new ``access_token`` and ``device_id`` are stored, so later connects reuse that device instead of
creating a new one each time.

State (``ctx.state``): ``next_batch`` is the sync token up to which every event has been committed by the
inbound pipeline (each push carries an ack; see ``sync.CommittedToken``), so a crash between push and commit
resumes before those events (the store keeps each once) instead of after them.
``reactions`` / ``own_reactions`` are bounded maps (``ctx.state.map``, see ``timeline.SeenReactions``);
``invites`` holds the invites still to join and the refused ones (``invites.InviteJoiner``).

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
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mautrix.client import Client
from mautrix.types import DeviceID, UserID

from msgr_bridge import ConnectorContext, SyncSnapshot
from msgr_bridge.connectors.protocol import StoredMedia
from msgr_bridge.errors import AuthenticationFailed, PermanentError
from msgr_bridge.schema import (
    Account,
    Attachment,
    AttachmentRule,
    Capabilities,
    Event,
)
from msgr_bridge.sdk.settings import settings_of

from . import client as wire
from .config import CAPABILITIES, MatrixSettings
from .convert import convert
from .invites import InviteJoiner
from .link import MatrixLinkFlow
from .outbound import MatrixOutbound
from .sync import CommittedToken, room_snapshot, sync_payloads
from .timeline import SeenReactions, Timeline

SYNC_TIMEOUT_MS = 30_000


class MatrixConnector(MatrixOutbound):
    network: ClassVar[str] = "matrix"
    display_name: ClassVar[str] = "Matrix"
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    settings_model: ClassVar[type[MatrixSettings]] = MatrixSettings

    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self.client: Client | None = None
        self.user_id = ctx.account.remote_user_id
        self.timeline = Timeline(self.user_id, self.log, SeenReactions(ctx.state, self.user_id))
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

    @property
    def settings(self) -> MatrixSettings:
        """The account's typed settings (validated by the core at start)."""
        return settings_of(self.ctx, MatrixSettings)

    @property
    def _filter(self) -> str:
        limit = self.settings.timeline_limit
        return json.dumps({"room": {"timeline": {"limit": limit}}, "presence": {"types": []}})

    def _api(self) -> Client:
        if self.client is None:
            raise PermanentError("the matrix connector is not connected", hint="call connect() first")
        return self.client

    async def connect(self) -> None:
        """Log in (access token first, then password) and read the server's upload limit."""
        settings = self.settings
        self._stop = asyncio.Event()
        self.client = client = wire.make_client(settings.homeserver, sync_timeout_s=SYNC_TIMEOUT_MS / 1000)
        try:
            session = await self._authenticate(client)
        except BaseException:
            await wire.close_client(client)
            self.client = None
            raise
        client.mxid = UserID(session.user_id)
        client.device_id = DeviceID(session.device_id)
        self.user_id = session.user_id
        self.timeline = Timeline(self.user_id, self.log, SeenReactions(self.ctx.state, self.user_id))
        await self.timeline.reactions.adopt_saved_blobs()
        self._auto_join = settings.auto_join_invites
        self.invites = InviteJoiner(self.user_id, self.log, allowed=settings.auto_join_from)
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
        user = self.settings.user_id or self.ctx.account.remote_user_id
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
        conversations, contacts = await room_snapshot(client, self.ctx.account, self.user_id, self.timeline)
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
            conversations, contacts = await room_snapshot(
                client, self.ctx.account, self.user_id, self.timeline
            )
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
            await self._committed.close(self._next_batch)  # stored once all of the above is committed

    async def _join_invites(self, client: Client, resp: Mapping[str, Any], *, full: bool) -> bool:
        """Join the invites of one sync answer (and retry pending ones); True when a room was joined.

        Runs before the sync token is stored, so a crash in between shows the invite again on restart.
        """
        return self._auto_join and await self.invites.on_sync(client, resp, self.ctx.state, full=full)

    async def _payloads(
        self, resp: Mapping[str, Any], since: str | None, *, live: bool
    ) -> tuple[list[Any], bool]:
        """Raw payloads of one sync answer (see ``sync.sync_payloads``); False when a gap stayed open."""
        max_backfill = self.settings.max_backfill
        return await sync_payloads(
            self._api, self.timeline, resp, since, live=live, max_backfill=max_backfill, log=self.log
        )

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
