"""Fixtures: the signal-cli-rest-api fake (``msgr_bridge.testing.fakes.signal``) with one linked number and
one other person, and connectors built for that number."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from msgr_bridge_signal import SignalConnector

from msgr_bridge.testing.fakes.signal import SignalFake

# The helpers sit next to this file; tests/ is not a package (so it cannot clash with other plugins' tests).
sys.path.insert(0, str(Path(__file__).parent))

from signal_fixtures import BOB, ME, connector_for


@pytest.fixture
async def fake() -> AsyncIterator[SignalFake]:
    async with SignalFake() as server:
        server.link(ME, "Me")
        server.person(BOB, "Bob")
        yield server
        assert server.violations == [], server.violations


@pytest.fixture
def make_connector(fake: SignalFake) -> Callable[..., SignalConnector]:
    def make(number: str = ME, **settings: Any) -> SignalConnector:
        return connector_for(fake, number, **settings)

    return make
