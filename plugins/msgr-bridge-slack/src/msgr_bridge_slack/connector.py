"""The Slack connector: one linked workspace account, read and written as the person.

``connect()`` checks the token (``auth.test``), loads the user list (names for mentions; refreshed by
``user_change``) and opens the real-time socket: Socket Mode with the app-level token when there is one,
RTM for a browser session. ``subscribe()`` pushes every event in order, acknowledging a Socket Mode
envelope only once the bridge committed its payload (``sink.push(..., ack=...)``); it reconnects at once
on a ``disconnect`` envelope, raises ``TransientError`` when the socket drops or stays silent past
``silence_timeout_s`` (deaf), and calls ``auth.test`` every ``liveness_interval_s`` so a token Slack
revoked without telling us turns the account ``bad_credentials``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from msgr_bridge import (
    Account,
    BaseConnector,
    Capabilities,
    OutboundMessage,
    SendResult,
    SyncSnapshot,
    TransientError,
)
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload, StoredMedia
from msgr_bridge.errors import AuthenticationFailed, PermanentError
from msgr_bridge.schema import Attachment, Event, ReactionAction

from .catchup import Backlog, Pacer, cursor_of, latest_of
from .client import IDLE, RELINK, Realtime, SlackWeb
from .config import CAPABILITIES, SECRET_APP_TOKEN, SECRET_COOKIE, SECRET_TOKEN, SlackSettings, token_kind
from .convert import CONVERTED, NETWORK, PAYLOAD_VERSION, conversation_of, convert, timestamp_of
from .media import STORED_MAP, STORED_MAX, InboundFiles, send_files, store_file
from .mrkdwn import mrkdwn_of, shortcode_of
from .users import UserDirectory


class SlackConnector(BaseConnector):
    network: ClassVar[str] = NETWORK
    display_name: ClassVar[str] = "Slack"
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    """Slack edits and deletes your own messages without a time limit; replies are threads (``thread_ts``);
    read markers are your own (``conversations.mark``); files up to 1 GB go through ``ctx.media`` and
    Slack's external upload (``media.py``). Typing cannot be sent through the Web API.
    ``chat.postMessage`` allows about one message a second per conversation."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.settings = SlackSettings.from_mapping(ctx.settings)
        self.web: SlackWeb | None = None
        self.socket: Realtime | None = None
        self.users = UserDirectory()
        self.self_id = self.settings.user_id or ctx.account.remote_user_id
        self.seen: dict[str, str] = {}
        """Last ``ts`` received live per conversation (the catch-up starts after it)."""
        self.backlog: Backlog | None = None
        """This connection's catch-up (``catchup.Backlog``); a new connection starts a new one."""
        self.pacer = Pacer(self.settings.history_per_minute)
        self._stopped = False
        self._app_token: str | None = None
        self.files = InboundFiles(
            self._web, ctx.media, ctx.state.map(STORED_MAP, max_entries=STORED_MAX), self.log
        )
        """Inbound files streamed into the core's storage before a payload is pushed (``media.py``)."""

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        from .link import SlackLinkFlow

        return SlackLinkFlow(settings)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return convert(payload, account)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.web is not None:
            await self.disconnect()
        self._stopped, self.backlog = False, None
        token = await self.ctx.secrets.get(SECRET_TOKEN)
        self._app_token = await self.ctx.secrets.get_optional(SECRET_APP_TOKEN)
        cookie = await self.ctx.secrets.get_optional(SECRET_COOKIE)
        if token_kind(token) == "user" and not self._app_token:
            raise AuthenticationFailed(
                "a Slack user token needs an app-level token (Socket Mode)", hint=RELINK
            )
        self.web = SlackWeb(self.settings, token, cookie if token_kind(token) == "session" else None)
        try:
            me = await self.web.call("auth.test")
            self.self_id = str(me.get("user_id") or self.self_id)
            async for user in self.web.pages("users.list", "members"):
                self.users.remember(user)
            self.socket = await self._open_socket()
        except BaseException:
            await self.disconnect()
            raise
        self.log.info("slack.connected", user=self.self_id, socket=self.socket.kind, users=len(self.users))

    async def _open_socket(self) -> Realtime:
        assert self.web is not None
        if self._app_token:
            app = SlackWeb(self.settings, self._app_token)
            try:
                url = (await app.call("apps.connections.open"))["url"]
            finally:
                await app.close()
            return await Realtime(self.web.http, str(url), "socket_mode", self.settings).open()
        url = (await self.web.call("rtm.connect"))["url"]
        return await Realtime(self.web.http, str(url), "rtm", self.settings).open()

    def stopping(self) -> bool:
        return self._stopped

    def _backlog(self) -> Backlog:
        if self.backlog is None:
            web, clock = self._web(), self.ctx.clock
            self.backlog = Backlog(
                web, self.ctx.state, self.settings, self.pacer, clock.sleep, self.log, self.ctx.progress
            )
        return self.backlog

    async def subscribe(self) -> None:
        if not self.stopping():
            self._backlog().start(lambda message: self._event(message, "history", None))
        next_check = time.monotonic() + self.settings.liveness_interval_s
        while not self.stopping():
            socket = self.socket
            if socket is None:
                return
            async for frame in socket.frames():
                if self.stopping():
                    return
                if frame is IDLE:
                    pass
                elif frame.get("type") == "disconnect":
                    if frame.get("reason") == "link_disabled":
                        raise AuthenticationFailed("Slack turned Socket Mode off for the app", hint=RELINK)
                    break
                else:
                    await self._frame(socket, frame)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.settings.liveness_interval_s
                    await self._web().call("auth.test")  # a token revoked without notice
            else:
                if self.stopping():
                    return
                raise TransientError("the Slack socket closed")
            await socket.close()  # a disconnect envelope: Slack asks for a new connection
            if not self.stopping():
                self.socket = await self._open_socket()
                self.log.info("slack.reconnected", reason="disconnect envelope")

    async def _frame(self, socket: Realtime, frame: Mapping[str, Any]) -> None:
        if socket.kind == "socket_mode":
            envelope_id = frame.get("envelope_id")
            payload = frame.get("payload")
            event = payload.get("event") if isinstance(payload, Mapping) else None
            if not isinstance(envelope_id, str):
                return
            if frame.get("type") != "events_api" or not isinstance(event, Mapping):
                await socket.ack(envelope_id)
                return

            async def ack() -> None:
                await socket.ack(envelope_id)

            await self._event(event, "socket_mode", ack)
        elif frame.get("type") not in (None, "hello", "pong", "reconnect_url"):
            await self._event(frame, "rtm", None)

    async def _event(self, event: Mapping[str, Any], source: str, ack: Any) -> None:
        kind = event.get("type")
        if kind == "user_change":
            self.users.remember(event.get("user"))
        if kind not in CONVERTED:  # presence, user_change, ...: nothing for the store
            if ack is not None:
                await ack()
            return
        channel, ts = event.get("channel"), event.get("ts")

        async def committed() -> None:  # the catch-up bound moves only past what is stored
            if kind == "message" and isinstance(channel, str) and isinstance(ts, str):
                with contextlib.suppress(ValueError):  # a malformed ts: the bound stays
                    self.seen[channel] = max(self.seen.get(channel, "0"), ts, key=float)
            if ack is not None:
                await ack()

        await self.ctx.sink.push(await self.files.add(self._payload(dict(event), source)), ack=committed)

    def _payload(self, event: dict[str, Any], source: str) -> dict[str, Any]:
        names = self.users.names_for(event)
        return {
            "v": PAYLOAD_VERSION,
            "self_id": self.self_id,
            "source": source,
            "event": event,
            "users": names,
            "received_ts": f"{time.time():.6f}",
        }

    async def disconnect(self) -> None:
        self._stopped = True
        if self.backlog is not None:
            await self.backlog.stop()
        socket, self.socket = self.socket, None
        web, self.web = self.web, None
        if socket is not None:
            await socket.close()
        if web is not None:
            await web.close()

    # --- outbound -----------------------------------------------------------------------------------

    def _web(self) -> SlackWeb:
        if self.web is None:
            raise TransientError("not connected to Slack")
        return self.web

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        text = mrkdwn_of(message)
        thread_ts = message.thread_id or message.reply_to
        if message.attachments:  # the first file's message carries the text
            sent = await send_files(
                self._web(),
                self.ctx.media,
                conversation_id,
                message.attachments,
                text=text,
                thread_ts=thread_ts,
            )
            return SendResult(remote_id=sent[0], extra_parts=tuple(sent[1:]), timestamp=timestamp_of(sent[0]))
        if not text.strip():
            raise PermanentError("a Slack message needs some text", hint="empty messages cannot be sent")
        sent_message = await self._web().call(
            "chat.postMessage", channel=conversation_id, text=text, thread_ts=thread_ts or None
        )
        ts = str(sent_message["ts"])
        return SendResult(remote_id=ts, timestamp=timestamp_of(ts))

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        await self._web().call("chat.update", channel=conversation_id, ts=target_id, text=mrkdwn_of(message))
        return SendResult(remote_id=target_id, timestamp=datetime.now(UTC))

    async def delete(self, conversation_id: str, target_id: str) -> None:
        await self._web().call("chat.delete", channel=conversation_id, ts=target_id)

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        method = "reactions.add" if action == ReactionAction.ADD else "reactions.remove"
        try:
            await self._web().call(
                method, channel=conversation_id, timestamp=target_id, name=shortcode_of(emoji)
            )
        except PermanentError as exc:
            if not exc.message.endswith(("already_reacted", "no_reaction")):
                raise  # the reaction is already as asked: done

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        await self._web().call("conversations.mark", channel=conversation_id, ts=up_to_id)

    async def store_media(self, attachment: Attachment) -> StoredMedia:
        """An inbound file (``url_private``) streamed into the core's media storage."""
        return await store_file(self._web(), self.ctx.media, attachment)

    # --- state sync ---------------------------------------------------------------------------------

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        """Conversations, contacts and (once per connection) the messages missed while disconnected."""
        web = self._web()
        latest = latest_of(cursor)
        for channel, ts in self.seen.items():
            latest[channel] = max(latest.get(channel, "0"), ts, key=float)
        conversations = []
        types = "public_channel,private_channel,mpim,im"
        async for chan in web.pages("conversations.list", "channels", types=types, exclude_archived=True):
            if isinstance(chan, Mapping) and (chan.get("is_member") or chan.get("is_im")):
                conversations.append(conversation_of(chan, self.users, self.ctx.account.id))
        messages, complete = await self._backlog().in_sync(latest, [c.remote_id for c in conversations])
        history: list[RawPayload] = [await self.files.add(self._payload(m, "history")) for m in messages]
        contacts = self.users.contacts(self.ctx.account.id, self.self_id)
        return SyncSnapshot(
            contacts=contacts,
            conversations=tuple(conversations),
            history=tuple(history),
            cursor=cursor_of(latest),
            complete=complete,
        )
