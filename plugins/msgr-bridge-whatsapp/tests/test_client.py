"""The wire client's own part below neonize: the connection's blocking Go call on a thread of its own, so
linked accounts do not use up the loop's default executor (which neonize would put it on)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from msgr_bridge_whatsapp import client
from msgr_bridge_whatsapp.client import OwnThreadGo, WaClient
from msgr_bridge_whatsapp.testing import FakeWhatsmeow

ACCOUNTS = 40
"""More connected accounts than the default executor has workers (min(32, CPUs + 4))."""


class BlockingGo:
    """whatsmeow's ``Neonize`` as it behaves: a synchronous call that returns only when the client stops."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: set[int] = set()
        self.names: set[str] = set()

    def Neonize(self, *args: Any) -> bytes:
        self.threads.add(threading.get_ident())
        self.names.add(threading.current_thread().name)
        self.release.wait(30)
        return b""


async def nothing(*args: Any) -> None:
    return None


async def test_connected_accounts_do_not_use_up_the_default_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    blocking = BlockingGo()
    calls = FakeWhatsmeow()  # every other call (none here but Stop)
    monkeypatch.setattr(client, "go_library", lambda: OwnThreadGo(blocking, calls))
    clients = [WaClient(f"/nonexistent/{i}.db", "test", nothing) for i in range(ACCOUNTS)]
    try:
        for wa in clients:
            await wa.start()
        for _ in range(100):
            if len(blocking.threads) == ACCOUNTS:
                break
            await asyncio.sleep(0.05)
        assert len(blocking.threads) == ACCOUNTS and all(n.startswith("whatsmeow") for n in blocking.names)
        # everything else that uses the default executor still runs (it stalled behind the connections)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 5) == 42
    finally:
        blocking.release.set()
        for wa in clients:
            await wa.stop()
