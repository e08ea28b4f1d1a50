"""The contract's early-disconnect case has teeth: ``disconnect()`` before ``subscribe``'s first step.

``Live.start`` yields once after creating the task, so only this case sees the order; these connectors
show that it fails one that raises there and one that pushes what it buffered, and passes loopback.
"""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_loopback import LoopbackConnector
from msgr_bridge_loopback.network import Session

from msgr_bridge.testing.contract import ConnectorContract

MODES = ["during_disconnect", "after_disconnect"]


class RaisesOnEarlySubscribe(LoopbackConnector):
    """Dishonest: ignores that ``disconnect()`` came first and finds no session (the Matrix bug)."""

    async def subscribe(self) -> None:
        self.stopped = False
        await super().subscribe()


class DrainsAfterDisconnect(LoopbackConnector):
    """Dishonest: ends quietly, but first pushes what waited in the closed session."""

    kept: Session | None = None

    async def disconnect(self) -> None:
        self.kept = self.session
        await super().disconnect()

    async def subscribe(self) -> None:
        if self.stopped and self.kept is not None:
            while self.kept.queue:
                await self.ctx.sink.push(self.kept.queue.popleft())
            return
        await super().subscribe()


@pytest.mark.parametrize("mode", MODES)
async def test_raising_after_an_early_disconnect_fails_the_suite(harness_for: Any, mode: str) -> None:
    with pytest.raises(AssertionError, match="must return normally"):
        await ConnectorContract().test_disconnect_before_subscribe_runs(
            harness_for(RaisesOnEarlySubscribe), mode
        )


@pytest.mark.parametrize("mode", MODES)
async def test_pushing_after_an_early_disconnect_fails_the_suite(harness_for: Any, mode: str) -> None:
    with pytest.raises(AssertionError, match="pushed after disconnect"):
        await ConnectorContract().test_disconnect_before_subscribe_runs(
            harness_for(DrainsAfterDisconnect), mode
        )


@pytest.mark.parametrize("mode", MODES)
async def test_loopback_passes_the_early_disconnect_case(harness_for: Any, mode: str) -> None:
    await ConnectorContract().test_disconnect_before_subscribe_runs(harness_for(LoopbackConnector), mode)
