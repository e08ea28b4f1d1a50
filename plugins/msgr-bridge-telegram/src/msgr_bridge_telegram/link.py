"""Linking a Telegram account the way the apps do it: phone number and the login code Telegram sends, or
a QR code scanned in a Telegram app (leave the phone empty), then the two-step verification password when
the account has one.

A wrong code or password gives the same step again with the reason (the person corrects it, the flow
goes on); a phone number Telegram refuses raises ``AuthenticationFailed``. Answers may also come all at
once (``phone``, ``code``, ``password``). The result holds the session (a Telethon ``StringSession``), the
api_hash and the update state at the link (where the first catch-up starts) as secrets, for the credential
layer; nothing is written to disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from telethon import TelegramClient, errors
from telethon.sessions import StringSession
from telethon.tl import functions

from msgr_bridge import AuthenticationFailed, FormField, LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import ConfigError, RateLimited, TransientError

from .catchup import channel_pts, dialogs
from .client import build_client, wire_errors
from .config import (
    DEFAULT_DC,
    SECRET_API_HASH,
    SECRET_LINK_STATE,
    SECRET_SESSION,
    TelegramSettings,
    test_server,
)
from .qr import QrLogin
from .state import UpdateState

PHONE = FormField(name="phone", label="Phone number, with the country code (+44 7700 900123)")
PHONE_OR_QR = FormField(
    name="phone", label="Phone number with the country code, or leave empty to scan a QR code", required=False
)
CODE = FormField(name="code", label="The login code Telegram sent to your other devices or by SMS")
PASSWORD = FormField(name="password", label="Two-step verification password", secret=True)
ATTEMPTS_MAX = 5
"""Wrong codes or passwords accepted before the flow gives up (Telegram itself bans guessers)."""


class TelegramLinkFlow:
    refresh_on_poll = True
    """GET /v1/links/{id} answers a QR step with nothing: a code about to expire is replaced."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.raw = dict(settings)
        self.settings: TelegramSettings | None = None
        self.client: TelegramClient | None = None
        self.phone: str | None = None
        self.code_sent = False
        self.needs_password = False
        self.attempts = 0
        self.qr: QrLogin | None = None
        self.lock = asyncio.Lock()

    async def start(self) -> LinkStep:
        self.settings = TelegramSettings.from_mapping(self.raw)
        if self.settings.api_hash is None:
            raise ConfigError(
                "[networks.telegram] api_hash is not set", hint="copy it from https://my.telegram.org"
            )
        return LinkStep(
            kind=LinkStepKind.CREDENTIALS_FORM, prompt="Log in to Telegram", fields=(PHONE_OR_QR,)
        )

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        async with self.lock:
            if self.settings is None:
                await self.start()
            return await self._advance(answers)

    async def _advance(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        client = await self._client()
        phone = (answers.get("phone") or "").strip()
        if self.qr is None and not self.code_sent and not phone:
            self.qr = QrLogin(client)
        if self.qr is not None and not self.needs_password:
            outcome = await self.qr.outcome()
            if outcome == "waiting":
                return await self.qr.step()
            self.needs_password = outcome == "password"
        elif not self.needs_password:
            step = await self._phone_and_code(client, phone, (answers.get("code") or "").strip())
            if step is not None:
                return step
        if self.needs_password:
            password = answers.get("password") or ""
            if not password:
                return self._ask(PASSWORD, "This account has two-step verification: enter its password")
            async with wire_errors("check the password"):
                try:
                    await client.sign_in(password=password)
                except errors.PasswordHashInvalidError:
                    return self._retry(PASSWORD, "That password is not right; try again")
        return await self._result(client)

    async def _phone_and_code(self, client: TelegramClient, phone: str, code: str) -> LinkStep | None:
        """Send the code to ``phone``, then sign in with ``code``; a step when an answer is missing/wrong."""
        if not self.code_sent:
            async with wire_errors("send a login code"):
                try:
                    await client.send_code_request(phone)
                except (
                    errors.PhoneNumberInvalidError,
                    errors.PhoneNumberBannedError,
                    errors.PhoneNumberUnoccupiedError,
                ):
                    raise AuthenticationFailed(f"Telegram refused the phone number {phone!r}") from None
            self.phone, self.code_sent = phone, True
        if not code:
            return self._ask(CODE, "Enter the login code Telegram sent you")
        async with wire_errors("sign in"):
            try:
                await client.sign_in(self.phone, code)
            except errors.SessionPasswordNeededError:
                self.needs_password = True
            except (errors.PhoneCodeInvalidError, errors.PhoneCodeEmptyError):
                return self._retry(CODE, "That code is not right; enter the code Telegram sent you")
            except errors.PhoneCodeExpiredError:
                self.code_sent = False
                raise AuthenticationFailed("the login code expired; start again for a new one") from None
        return None

    def _ask(self, field: FormField, prompt: str) -> LinkStep:
        kind = LinkStepKind.CODE_ENTRY if field is CODE else LinkStepKind.CREDENTIALS_FORM
        return LinkStep(kind=kind, prompt=prompt, fields=(field,))

    def _retry(self, field: FormField, prompt: str) -> LinkStep:
        self.attempts += 1
        if self.attempts >= ATTEMPTS_MAX:
            raise AuthenticationFailed(f"{self.attempts} wrong answers; start linking again later")
        return self._ask(field, prompt)

    async def _client(self) -> TelegramClient:
        if self.client is None:
            assert self.settings is not None and self.settings.api_hash is not None
            api_hash = self.settings.api_hash
            session = StringSession()
            session.set_dc(*(test_server() or DEFAULT_DC))
            self.client = build_client(session, self.settings.api_id, api_hash, self.settings)
            self.api_hash = api_hash
            async with wire_errors("connect to Telegram"):
                await self.client.connect()
        return self.client

    async def _result(self, client: TelegramClient) -> LinkResult:
        async with wire_errors("read the account"):
            me = await client.get_me()
        linked = await self._state(client)
        session = StringSession.save(client.session)
        await self.cancel()
        assert self.settings is not None
        name = " ".join(p for p in (me.first_name, me.last_name) if p) or None
        return LinkResult(
            remote_user_id=str(me.id),
            display_name=name,
            settings={"api_id": self.settings.api_id, "username": me.username},
            secrets={
                SECRET_SESSION: session,
                SECRET_API_HASH: self.api_hash,
                **({SECRET_LINK_STATE: linked} if linked else {}),
            },
        )

    @staticmethod
    async def _state(client: TelegramClient) -> str | None:
        """The update state now (and each channel's ``pts``), where the first catch-up starts; None when
        Telegram is busy (FLOOD_WAIT, a failure): the link goes on and the first sync starts from then."""
        try:
            async with wire_errors("read the update state"):
                now = await client(functions.updates.GetStateRequest())
            channels = channel_pts(await dialogs(client))
        except (RateLimited, TransientError):
            return None
        return UpdateState(now.pts, now.qts, int(now.date.timestamp()), now.seq, channels).as_json_text()

    async def cancel(self) -> None:
        if self.qr is not None:
            await self.qr.close()
        client, self.client = self.client, None
        if client is not None:
            await client.disconnect()
