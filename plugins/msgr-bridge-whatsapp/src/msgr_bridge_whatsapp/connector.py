"""The WhatsApp connector: one personal account, linked as a companion device, read and written as the
person through neonize (whatsmeow).

``connect()`` waits for ``Relogin`` (logins spaced with growing delays), restores the session database from
the credential layer into a private directory (``session.py``), dials WhatsApp and waits for ``Connected``;
a logged-out device turns the account ``bad_credentials`` (``AuthenticationFailed``) and its stored session
is deleted. ``subscribe()`` pushes neonize's events as JSON-compatible dicts (``convert.py``), stores media
through ``ctx.media`` first, imports history-sync chunks (and those the link flow received, handed over in
a secret) with progress on ``ctx.progress``, and saves the session
database every ``session_save_interval_s`` when it changed. Sends are paced with jitter (``pacing.py``).
With ``isolate = true`` the neonize client runs in a child process (``isolate.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from google.protobuf.message import Message as Proto

from msgr_bridge import Account, BaseConnector, Capabilities
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload
from msgr_bridge.errors import AuthenticationFailed, TransientError
from msgr_bridge.schema import Event

from .actions import Actions
from .client import WaClient
from .config import CAPABILITIES, SECRET_SESSION, WhatsAppSettings
from .convert import NETWORK, convert
from .history import LiveProgress
from .inbound import Inbound
from .pacing import Relogin, SendPacer
from .session import SessionFile

LOGIN_OUTCOMES = {"connected", "logged_out", "temporary_ban", "connect_failure", "qr", "ended"}
PUSHED = {"message", "receipt", "presence", "group"}
QUEUE_MAX = 1000
RELINK = "link the account again (POST /v1/links, network whatsapp) and scan the QR code with the phone"


class Banned(TransientError):
    """A temporary ban: its failed login is already recorded with the ban's expiry."""


class WhatsAppConnector(Inbound, Actions, BaseConnector):
    network: ClassVar[str] = NETWORK
    display_name: ClassVar[str] = "WhatsApp"
    settings_model: ClassVar[type[WhatsAppSettings]] = WhatsAppSettings
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    """WhatsApp lets the sender edit for 15 minutes and delete for everyone for about two days; replies quote
    the message; files go through ``ctx.media`` (100 MB by default: neonize uploads from memory). WhatsApp
    publishes no rate limit; one send every two seconds per conversation, plus the account-wide pacing with
    jitter, stays far from what gets accounts flagged. Messages missed while offline arrive live from
    WhatsApp's server queue on reconnect; there is no history fetch after linking."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.settings = WhatsAppSettings.from_mapping(ctx.settings)
        self.self_jid = self.settings.jid or ctx.account.remote_user_id
        self.wa: Any = None
        self.session: SessionFile | None = None
        self.queue: asyncio.Queue[tuple[str, Proto]] = asyncio.Queue(QUEUE_MAX)
        self.stop_event = asyncio.Event()
        self.wire_down = asyncio.Event()
        """Set when the wire client died under us (the child process of ``isolate = true``)."""
        self.login: asyncio.Future[tuple[str, Any]] | None = None
        self.sent: OrderedDict[str, str] = OrderedDict()
        """Message ids of our own sends -> their transaction ids (the echo of a send carries it)."""
        self.authors: OrderedDict[str, str] = OrderedDict()
        """Recent message ids -> their sender (reactions and receipts in groups name the author)."""
        self.history_progress = LiveProgress()
        s = self.settings
        self.relogin = Relogin(
            ctx.state,
            ctx.clock,
            self.log,
            base_s=s.relogin_base_s,
            cap_s=s.relogin_cap_s,
            alert_after=s.relogin_alert_after,
        )
        self.pacer = SendPacer(ctx.clock, interval_s=s.send_interval_s, jitter_s=s.send_jitter_s)

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        from .link import WhatsAppLinkFlow

        return WhatsAppLinkFlow(settings)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        return convert(payload, account)

    # --- lifecycle ----------------------------------------------------------------------------------

    def _new_client(self, db_path: str) -> Any:
        if self.settings.isolate:
            from .isolate import ChildClient

            return ChildClient(db_path, self.settings.device_name, self._on_event, self._on_qr)
        return WaClient(db_path, self.settings.device_name, self._on_event, self._on_qr)

    async def connect(self) -> None:
        if self.wa is not None:
            await self.disconnect()
        self.stop_event, self.wire_down = asyncio.Event(), asyncio.Event()
        self.queue = asyncio.Queue(QUEUE_MAX)
        await self.relogin.before_attempt()
        blob = await self.ctx.secrets.get_optional(SECRET_SESSION)
        if blob is None:
            raise AuthenticationFailed("this WhatsApp account has no stored session", hint=RELINK)
        self.session = SessionFile()
        try:
            self.session.restore(blob)
            self.login = asyncio.get_running_loop().create_future()
            self.wa = self._new_client(str(self.session.path))
            await self.wa.start()
            kind, event = await asyncio.wait_for(asyncio.shield(self.login), self.settings.connect_timeout_s)
            await self._login_outcome(kind, event)
        except BaseException as exc:
            if not isinstance(exc, (AuthenticationFailed, Banned)):
                await self.relogin.failed(f"{type(exc).__name__}: {exc}")
            await self._close(save=not isinstance(exc, AuthenticationFailed))
            raise
        await self.relogin.succeeded()
        self.log.info("whatsapp.connected", jid=self.self_jid, isolated=self.settings.isolate)

    async def _login_outcome(self, kind: str, event: Any) -> None:
        if kind == "connected":
            return
        if kind in ("logged_out", "qr"):
            await self._logged_out(event)
        if kind == "temporary_ban":
            await self._banned(event)
        if kind == "ended":
            ended = self.wa.ended() if self.wa is not None else None
            raise TransientError(f"the WhatsApp connection ended while logging in: {ended}")
        raise TransientError(f"WhatsApp refused the connection: {kind} {event}")

    async def _logged_out(self, event: Any) -> None:
        await self.ctx.secrets.delete(SECRET_SESSION)
        reason = getattr(event, "Reason", None)
        self.log.error("whatsapp.logged_out", reason=reason, hint=RELINK)
        raise AuthenticationFailed(f"WhatsApp logged this device out (reason {reason})", hint=RELINK)

    async def _banned(self, event: Any) -> None:
        expire = float(getattr(event, "Expire", 0) or 0)
        until = self.ctx.clock.now().timestamp() + expire
        await self.relogin.failed(f"temporary ban for {expire:.0f}s", not_before=until)
        raise Banned(f"WhatsApp banned this account temporarily ({expire:.0f}s)", hint="wait; do not relink")

    async def _on_event(self, kind: str, event: Proto) -> None:
        """Called on the loop by neonize's dispatcher (or the child process's reader) for every event."""
        if kind in LOGIN_OUTCOMES and self.login is not None and not self.login.done():
            self.login.set_result((kind, event))
            if kind != "logged_out":
                return
        if kind == "ended":  # the connection call returned, or the child process of isolate.py is gone
            self.wire_down.set()
        elif kind in ("disconnected", "keepalive_timeout"):
            self.log.warning("whatsapp.connection_trouble", event=kind)  # whatsmeow reconnects by itself
        elif kind in (*PUSHED, "history", "logged_out", "stream_replaced", "temporary_ban"):
            await self.queue.put((kind, event))

    async def _on_qr(self, code: str) -> None:
        await self._on_event("qr", None)  # a QR at login: the device is unpaired

    def stopping(self) -> bool:
        return self.stop_event.is_set()

    async def subscribe(self) -> None:
        await self._import_link_history()
        while not self.stopping():
            item = asyncio.ensure_future(self.queue.get())
            stop = asyncio.ensure_future(self.stop_event.wait())
            down = asyncio.ensure_future(self.wire_down.wait())
            await asyncio.wait(
                {item, stop, down},
                timeout=self.settings.session_save_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            stop.cancel()
            down.cancel()
            if not item.done():
                item.cancel()
                if self.stopping():
                    return
                ended = self.wa.ended() if self.wa is not None else None
                if ended is not None or self.wire_down.is_set():
                    raise TransientError(f"the WhatsApp client stopped: {ended}")
                await self._save()
                continue
            if self.stopping():
                return
            await self._handle(*item.result())

    async def _handle(self, kind: str, event: Any) -> None:
        if kind == "logged_out":
            await self._logged_out(event)
        elif kind == "temporary_ban":
            await self._banned(event)
        elif kind == "stream_replaced":
            raise TransientError("another client connected with this session (stream replaced)")
        elif kind == "history":
            await self._history(event)
        else:
            await self._push(kind, event)

    async def _save(self) -> None:
        if self.session is None:
            return
        try:
            blob = await asyncio.to_thread(self.session.changed_blob)
        except Exception as exc:  # a locked or half-written database: the next save tries again
            self.log.warning("whatsapp.session_save_failed", error=str(exc))
            return
        if blob is not None:
            await self.ctx.secrets.put(SECRET_SESSION, blob)
            self.log.debug("whatsapp.session_saved", bytes=len(blob))

    async def _close(self, *, save: bool) -> None:
        wa, self.wa = self.wa, None
        if wa is not None:
            await wa.stop()
        if save:
            with contextlib.suppress(Exception):
                await self._save()
        session, self.session = self.session, None
        if session is not None:
            session.wipe()

    async def disconnect(self) -> None:
        self.stop_event.set()
        try:
            logged_out = await self.ctx.secrets.get_optional(SECRET_SESSION) is None
        except Exception as exc:  # the credential layer is down: still stop, and wipe the plaintext copy
            self.log.warning("whatsapp.session_not_saved", error=str(exc))
            logged_out = True
        await self._close(save=not logged_out)
