"""The Matrix connector: the user's own account over the client-server API (puppeting, not an appservice).

Secrets: ``access_token`` and/or ``password``, and ``device_id``; after a password login the new token and
device id are stored, so later connects reuse that device. State (``ctx.state``): ``next_batch``, the sync
token up to which every pushed event is committed (``sdk.cursor.CommittedCursor``: a crash between push and
commit resumes before those events); the reaction maps (``timeline.SeenReactions``); the invites
(``sync.InviteJoiner``). Attachments go through ``ctx.media`` both ways (never a file or URL opened here).
``m.room.encrypted`` events are skipped (logged ``matrix.encrypted_event_skipped``), not quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

from mautrix.client import Client
from mautrix.types import DeviceID, UserID

from msgr_bridge import ConnectorContext, SyncSnapshot
from msgr_bridge.connectors.protocol import StoredMedia
from msgr_bridge.errors import AuthenticationFailed, PermanentError
from msgr_bridge.schema import Attachment, AttachmentRule, Capabilities
from msgr_bridge.sdk.cursor import CommittedCursor
from msgr_bridge.sdk.settings import settings_of

from . import DESCRIPTION
from . import client as wire
from .config import MatrixSettings
from .outbound import MatrixOutbound
from .sync import InviteJoiner, room_snapshot, sync_payloads
from .timeline import SeenReactions, Timeline

SYNC_TIMEOUT_MS = 30_000


class MatrixConnector(MatrixOutbound, description=DESCRIPTION):
    def __init__(self, ctx: ConnectorContext) -> None:
        super().__init__(ctx)
        self.client: Client | None = None
        self.user_id = ctx.account.remote_user_id
        self.timeline = Timeline(self.user_id, self.log, SeenReactions(ctx.state, self.user_id))
        self.invites = InviteJoiner(self.user_id, self.log, ctx.state)
        self._auto_join = True
        self._caps = self.capabilities
        self._next_batch: str | None = None
        self._committed = CommittedCursor(self._save_token)
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

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
        self.invites = InviteJoiner(self.user_id, self.log, self.ctx.state, allowed=settings.auto_join_from)
        await self.invites.load()
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
        """The joined rooms and members, and as history all since the stored token (or ``cursor``), gaps
        closed through ``/messages``. Without a token: the last ``timeline_limit`` events per room,
        ``complete=False``. While ``subscribe()`` runs, the live stream is the history: rooms only."""
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
        """Long-poll ``/sync`` until ``disconnect()`` (also one that came before: returns at once); a token is
        stored once its payloads are committed."""
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
        self._committed = CommittedCursor(self._save_token)
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
        """Join the answer's invites (before its token is stored: a crash shows them again); True when one
        was joined."""
        return self._auto_join and await self.invites.on_sync(client, resp.get("rooms") or {}, full=full)

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
        """An inbound attachment (``url``: its ``mxc://``) streamed into the core's media storage, capped."""
        max_size = self._caps.attachments[0].max_size if self._caps.attachments else None
        return await self.ctx.media.receive(
            wire.download_stream(self._api(), attachment.url or ""),
            name=attachment.name,
            mime_type=attachment.mime_type,
            max_bytes=max_size,
        )
