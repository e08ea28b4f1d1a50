"""Fixtures for the operations tests: an in-memory span exporter, a running bridge with chosen settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from msgr_bridge_loopback import LoopbackNetwork
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.observability import tracing
from msgr_bridge.observability.otel_setup import use_exporter
from msgr_bridge.store.db import Database
from msgr_bridge.testing.config import with_loopback
from tests.api.conftest import NET, Api


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    handle = use_exporter(exporter)
    yield exporter
    handle.shutdown()
    assert not tracing.enabled()


@pytest.fixture
def net() -> LoopbackNetwork:
    LoopbackNetwork.reset(NET)
    n = LoopbackNetwork.get(NET)
    n.add_user("alice", "Alice", password="pw-alice")
    n.add_user("bob", "Bob", password="pw-bob")
    n.add_user("carol", "Carol", password="pw-carol")
    n.create_group("g", "Group", ["alice", "bob", "carol"])
    return n


Start = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def start(tmp_path: Path, db: Database, net: LoopbackNetwork) -> Start:
    """``async with start(metrics={...}, alerts={...}) as api:``: a bridge with those config sections."""

    @asynccontextmanager
    async def run(**sections: Any) -> AsyncIterator[Api]:
        settings = load_settings(
            overrides=with_loopback(
                {
                    "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
                    "database": {"url": db.url.render_as_string(hide_password=False)},
                    "api": {"port": 0},
                    "sync": {"interval_s": 3600},
                    **sections,
                }
            )
        )
        async with Bridge(settings).running() as bridge:
            assert bridge.api is not None
            connector = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver())
            async with aiohttp.ClientSession(connector=connector) as http:
                a = Api(bridge, http, f"http://127.0.0.1:{bridge.api.bound_port}")
                a.admin = await a.token("admin:*")
                yield a

    return run
