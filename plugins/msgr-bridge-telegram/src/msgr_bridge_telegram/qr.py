"""QR-code login for the link flow: the person scans the code with a Telegram app where they are logged in.

Telethon's ``QRLogin.wait`` must already run while the code is scanned, so it runs as a task from the
moment the code is shown. Each poll of the flow answers with the current code, and a new one once the
current code is about to expire (Telegram's tokens live about 30 seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from telethon import TelegramClient, errors

from msgr_bridge import LinkStep, LinkStepKind

from .client import wire_errors

REFRESH_BEFORE = timedelta(seconds=5)
"""A code this close to its expiry is replaced before it is shown again."""


class QrLogin:
    def __init__(self, client: TelegramClient) -> None:
        self.client = client
        self.qr: Any = None
        self.task: asyncio.Task[Any] | None = None

    async def step(self) -> LinkStep:
        """The QR code to show (a fresh one when there is none yet or it is about to expire)."""
        if self.qr is None or self.qr.expires - datetime.now(UTC) < REFRESH_BEFORE:
            await self.close()
            async with wire_errors("create a login QR code"):
                if self.qr is None:
                    self.qr = await self.client.qr_login()
                else:
                    await self.qr.recreate()
            self.task = asyncio.create_task(self.qr.wait())
        return LinkStep(
            kind=LinkStepKind.QR_CODE,
            prompt="Scan this code in Telegram: Settings > Devices > Link Desktop Device",
            qr_data=self.qr.url,
            expires_at=self.qr.expires,
        )

    async def outcome(self) -> Literal["waiting", "password", "done"]:
        task = self.task
        if task is None or not task.done():
            return "waiting"
        self.task = None
        error = task.exception()
        if error is None:
            return "done"
        if isinstance(error, errors.SessionPasswordNeededError):
            return "password"
        if isinstance(error, TimeoutError):
            return "waiting"  # expired unscanned: step() shows a new code
        async with wire_errors("log in with the QR code"):
            raise error

    async def close(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
