"""Linking a WhatsApp account as a companion device, the way WhatsApp Web does it.

``start`` dials WhatsApp with an empty session and returns a ``qr_code`` step with the first QR code
WhatsApp issued (the API shows it as a picture). The person scans it on the phone (WhatsApp > Settings >
Linked devices > Link a device). WhatsApp rotates the code every 20 to 60 seconds: answering the step
with nothing (``{}``) returns the current code, or the linked account once the phone has paired. Instead of
scanning, the person may answer ``phone`` (with the country code): the step becomes a ``device_code`` step
with the 8-character pairing code to type on the phone ("Link with phone number instead"). A phone number
that is not one is asked again, with the reason; a pairing the phone refused is refused with its reason,
and the next answer starts over with a new QR code. Once paired, the client is stopped and the session
database goes into the result's secrets (the credential layer encrypts it); its files are removed. The
history-sync chunks WhatsApp sent meanwhile go into the ``link_history`` secret, which the account imports
when it starts (``history.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from typing import Any

import structlog

from msgr_bridge import FormField, LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import AuthenticationFailed, PermanentError, TransientError

from .client import WaClient, text_of_jid
from .config import SECRET_SESSION, WhatsAppSettings
from .history import SECRET_HISTORY, LinkHistory
from .inbound import as_dict
from .session import SessionFile, encode

log = structlog.get_logger("msgr_bridge.whatsapp")
PHONE = FormField(
    name="phone",
    label="Or your phone number with the country code, for a pairing code instead (+44 7700 900123)",
    required=False,
)
FIRST_QR_WAIT_S = 30.0
POLL_WAIT_S = 5.0
CONNECT_AFTER_PAIR_S = 30.0
SCAN = "Scan this QR code with WhatsApp on your phone: Settings > Linked devices > Link a device."
TYPE_CODE = (
    "On your phone: WhatsApp > Settings > Linked devices > Link a device > Link with phone number instead, "
    "then type this code."
)


def phone_digits(text: str) -> str | None:
    digits = re.sub(r"[\s\-().]", "", text).removeprefix("+").removeprefix("00")
    return digits if re.fullmatch(r"[1-9]\d{6,14}", digits) else None


class WhatsAppLinkFlow:
    refresh_on_poll = True
    """GET /v1/links/{id} answers the step with nothing: the current QR code, or the account once paired."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.settings = WhatsAppSettings.from_mapping(defaults)
        self.session: SessionFile | None = None
        self.wa: WaClient | None = None
        self.qr: str | None = None
        self.code: str | None = None
        self.jid: str | None = None
        self.name: str | None = None
        self.failure: str | None = None
        self.changed = asyncio.Event()
        self.online = asyncio.Event()
        self.history = LinkHistory()

    async def _event(self, kind: str, event: Any) -> None:
        if kind == "pair":
            if event.Status == type(event).SUCCESS:
                self.jid, self.name = text_of_jid(event.ID), event.BusinessName or None
            else:
                self.failure = f"WhatsApp refused the pairing: {event.Error or 'error'}"
        elif kind == "connected" and self.jid is not None:
            self.online.set()
        elif kind == "history":  # WhatsApp starts the history sync at once: kept for the account
            self.history.add(event, as_dict)
            return
        elif kind in ("logged_out", "temporary_ban", "connect_failure"):
            self.failure = f"WhatsApp ended the link ({kind})"
        self.changed.set()

    async def _qr(self, code: str) -> None:
        self.qr = code
        self.changed.set()

    async def _wait(self, timeout: float) -> None:
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def start(self) -> LinkStep:
        self.session = SessionFile()
        self.wa = WaClient(str(self.session.path), self.settings.device_name, self._event, self._qr)
        await self.wa.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FIRST_QR_WAIT_S
        while self.qr is None and self.failure is None and loop.time() < deadline:
            await self._wait(deadline - loop.time())
        if self.qr is None:
            await self.cancel()
            raise TransientError(self.failure or "WhatsApp sent no QR code in time", hint="try again")
        return self._step()

    def _step(self, problem: str | None = None) -> LinkStep:
        prefix = f"Please correct: {problem}. " if problem else ""
        if self.code is not None:
            return LinkStep(kind=LinkStepKind.DEVICE_CODE, prompt=prefix + TYPE_CODE, user_code=self.code)
        return LinkStep(kind=LinkStepKind.QR_CODE, prompt=prefix + SCAN, qr_data=self.qr, fields=(PHONE,))

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        if self.wa is None:
            await self.start()
        assert self.wa is not None
        await self._check_failure()
        phone = str(answers.get("phone") or "").strip()
        if phone and self.code is None and self.jid is None:
            digits = phone_digits(phone)
            if digits is None:
                return self._step(f"{phone!r} is not a phone number with its country code")
            try:
                self.code = await self.wa.pair_phone(digits)
            except PermanentError as exc:
                return self._step(exc.message)
            return self._step()
        if self.jid is None:
            await self._wait(POLL_WAIT_S)
        await self._check_failure()
        if self.jid is None:
            return self._step()
        return await self._result()

    async def _check_failure(self) -> None:
        """A refused pairing ends this connection; the next answer starts a new one with a new QR code."""
        if self.failure is not None:
            failure = self.failure
            await self.cancel()
            self.failure = self.qr = self.code = self.jid = self.name = None
            self.online.clear()
            raise AuthenticationFailed(failure, hint="answer again for a new QR code")

    async def _result(self) -> LinkResult:
        with contextlib.suppress(TimeoutError):  # whatsmeow reconnects after pairing, then says Connected
            await asyncio.wait_for(self.online.wait(), CONNECT_AFTER_PAIR_S)
        assert self.wa is not None and self.session is not None and self.jid is not None
        await self.wa.stop()
        data = await asyncio.to_thread(self.session.snapshot)
        self.session.wipe()
        self.wa = self.session = None
        if data is None:
            raise AuthenticationFailed("the pairing left no session behind", hint="start linking again")
        stored = self.settings.model_copy(update={"jid": self.jid}).stored()
        secrets = {SECRET_SESSION: encode(data)}
        history = self.history.secret()
        if history is not None:
            secrets[SECRET_HISTORY] = history
            dropped = self.history.dropped
            log.info("whatsapp.link_history_kept", messages=len(self.history.messages), dropped=dropped)
        return LinkResult(
            remote_user_id=self.jid,
            display_name=self.name or self.jid.split("@")[0],
            settings=stored,
            secrets=secrets,
        )

    async def cancel(self) -> None:
        wa, self.wa = self.wa, None
        if wa is not None:
            await wa.stop()
        session, self.session = self.session, None
        if session is not None:
            session.wipe()

    async def close(self) -> None:
        await self.cancel()
