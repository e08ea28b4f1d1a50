"""A fake Telegram per test (``msgr_bridge.testing.fakes.telegram``), with Alice (the account under test,
with two-step verification) and Bob (the other person). Every test fails if the fake met a request it could
not parse or does not implement."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from msgr_bridge_telegram.config import TEST_SERVER_ENV

from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.testing.fakes.telegram import FakeTelegram
from msgr_bridge.testing.fakes.telegram.world import User
from msgr_bridge.testing.media import local_shares

PASSWORD = "correct horse"
SETTINGS = {"api_id": 611335, "api_hash": "0123456789abcdef0123456789abcdef", "liveness_s": 0.5}


@dataclass
class Telegram:
    fake: FakeTelegram
    alice: User
    bob: User
    settings = SETTINGS

    def answers(self) -> dict[str, str]:
        return {"phone": "+" + self.alice.phone, "code": self.alice.login_code, "password": PASSWORD}

    async def until(self, check: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until ``check()`` is true; the fake signals every change it makes."""
        async with asyncio.timeout(timeout):
            while not check():
                self.fake.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.fake.changed.wait(), 0.2)


@pytest.fixture
async def telegram(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Telegram]:
    fake = await FakeTelegram().start()
    monkeypatch.setenv(TEST_SERVER_ENV, fake.address)
    alice = fake.world.add_user("Alice", "15550001", password=PASSWORD, username="alice")
    bob = fake.world.add_user("Bob", "15550002", username="bob")
    try:
        yield Telegram(fake, alice, bob)
    finally:
        await fake.stop()
    assert fake.protocol_errors == [], fake.protocol_errors


@pytest.fixture
async def shares(tmp_path: Path) -> AsyncIterator[ShareLinkService]:
    """Share-link storage for inbound files (SQLite and a local directory)."""
    async with local_shares(tmp_path) as shares:
        yield shares
