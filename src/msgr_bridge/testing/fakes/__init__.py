"""In-memory implementations of the doors the core gives a connector (sink, secrets, state).

Wire-level fakes of the platforms live in submodules (``fakes.slack``, ``fakes.telegram``, ...).

They implement the same Protocols as the production parts, so a connector test drives the real connector
and real client library against a real server while watching what reaches the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import anyio
import structlog

from ...connectors.clock import SystemClock
from ...connectors.protocol import Ack, ConnectorContext, RawPayload
from ...errors import CredentialNotFound
from ...schema import Account, ConnectionState


class CollectingSink:
    """Collects pushed payloads; ``wait_for`` blocks until a matching payload arrives."""

    def __init__(self) -> None:
        self.payloads: list[RawPayload] = []
        self._changed = anyio.Event()

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        self.payloads.append(payload)
        if ack is not None:
            await ack()
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> RawPayload:
        with anyio.fail_after(timeout):
            while True:
                for p in self.payloads:
                    if predicate(p):
                        return p
                await self._changed.wait()


class MemorySecrets:
    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, str] = dict(values or {})
        self.expiry: dict[str, datetime | None] = {}

    async def get(self, key: str) -> str:
        try:
            return self.values[key]
        except KeyError:
            raise CredentialNotFound(f"no secret {key!r} for this account") from None

    async def get_optional(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str, *, expires_at: datetime | None = None) -> None:
        self.values[key] = value
        self.expiry[key] = expires_at

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


class MemoryStateStore:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def make_context(
    network: str,
    *,
    account_id: str = "acct-1",
    remote_user_id: str = "me",
    settings: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    sink: Any = None,
    state: Any = None,
) -> ConnectorContext:
    """A ``ConnectorContext`` wired to in-memory doors, for connector tests."""
    return ConnectorContext(
        account=Account(
            id=account_id, network=network, remote_user_id=remote_user_id, state=ConnectionState.STOPPED
        ),
        sink=sink if sink is not None else CollectingSink(),
        secrets=MemorySecrets(secrets),
        state=state if state is not None else MemoryStateStore(),
        clock=SystemClock(),
        settings=dict(settings or {}),
        log=structlog.get_logger("msgr_bridge.test").bind(network=network, account=account_id),
    )
