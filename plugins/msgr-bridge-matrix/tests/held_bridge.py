"""Test-only: ``msgr-bridge run`` whose inbound commits can be held, for the crash test of the sync token.

While the file named by ``MSGR_TEST_HOLD_FILE`` exists, every batch the inbound pipeline would commit waits
before its transaction (the connector's pushes return, nothing is committed). Each pushed payload's event id
is appended to ``MSGR_TEST_PUSHED_LOG`` once its push returned, so the test knows what is in flight.
Nothing here is in the production code path: this script patches the sink and the persist stage of its own
process only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msgr_bridge.cli import main
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.inbound.sink import AccountSink
from msgr_bridge.testing.waiting import wait_until

HOLD = Path(os.environ["MSGR_TEST_HOLD_FILE"])
PUSHED_LOG = Path(os.environ["MSGR_TEST_PUSHED_LOG"])
_persist = DatabaseInboundStore.persist
_push = AccountSink.push


def _log_pushed(payload: Any) -> None:
    event = payload.get("event") if isinstance(payload, dict) else None
    if isinstance(event, dict) and isinstance(event.get("event_id"), str):
        with PUSHED_LOG.open("a") as log:
            log.write(event["event_id"] + "\n")


async def logged_push(self: AccountSink, payload: Any, *, ack: Any = None) -> None:
    await _push(self, payload, ack=ack)
    _log_pushed(payload)


async def held_persist(
    self: DatabaseInboundStore, tenant: str, events: Sequence[Any], quarantined: Any
) -> Any:
    await wait_until(lambda: not HOLD.exists(), timeout=3600, interval=0.05)
    return await _persist(self, tenant, events, quarantined)


AccountSink.push = logged_push  # type: ignore[method-assign]
DatabaseInboundStore.persist = held_persist  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(["run"]))
