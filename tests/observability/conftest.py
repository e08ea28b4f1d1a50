"""Fixtures for the operations tests: an in-memory span exporter, a running bridge with chosen settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from msgr_bridge_loopback import LoopbackNetwork
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from msgr_bridge.observability import tracing
from msgr_bridge.observability.otel_setup import use_exporter
from msgr_bridge.store.db import Database
from tests.api.conftest import Api, Start, net, running, settings_for

__all__ = ["Start", "net", "spans", "start"]  # net: the API tests' loopback network, shared


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    handle = use_exporter(exporter)
    yield exporter
    handle.shutdown()
    assert not tracing.enabled()


@pytest.fixture
def start(tmp_path: Path, db: Database, net: LoopbackNetwork) -> Start:
    """``async with start(metrics={...}, alerts={...}) as api:``: a bridge with those config sections."""

    @asynccontextmanager
    async def run(**sections: Any) -> AsyncIterator[Api]:
        async with running(settings_for(tmp_path, db, sections=sections)) as a:
            yield a

    return run
