"""Fixtures of the contract-suite tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

from tests.testing.test_contract import MiniHarness


@pytest.fixture
def harness_for() -> Iterator[Callable[[type[LoopbackConnector]], MiniHarness]]:
    """``harness_for(ConnectorClass)``: a MiniHarness on a network of its own, reset afterwards."""
    made: list[MiniHarness] = []

    def make(cls: type[LoopbackConnector]) -> MiniHarness:
        made.append(MiniHarness(cls))
        return made[-1]

    yield make
    for h in made:
        LoopbackNetwork.reset(h.name)
