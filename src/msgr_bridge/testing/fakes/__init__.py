"""In-memory implementations of the doors the core gives a connector (sink, secrets, state).

Wire-level fakes of the platforms live in submodules (``fakes.slack``, ``fakes.telegram``, ...).

They implement the same Protocols as the production parts, so a connector test drives the real connector
and real client library against a real server while watching what reaches the core.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import structlog

from ...connectors.clock import SystemClock
from ...connectors.protocol import Ack, ConnectorContext, RawPayload
from ...errors import CredentialNotFound
from ...schema import Account, ConnectionState
from ...sdk.progress import RecordingProgress
from ...sdk.state import check_bound, check_key, check_limit, check_ttl, check_value


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


class HoldingSink(CollectingSink):
    """A ``CollectingSink`` whose commits are held: acks wait until ``release()`` (a pipeline that has not
    committed yet), so a test can stop a connector between push and commit."""

    def __init__(self) -> None:
        super().__init__()
        self.held_acks: list[Ack] = []

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        if ack is not None:
            self.held_acks.append(ack)
        await super().push(payload)

    async def release(self) -> None:
        """Commit everything pushed so far: call the held acks in push order."""
        acks, self.held_acks = self.held_acks, []
        for ack in acks:
            await ack()


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


class _MemoryKeys:
    """Keys with optional expiry, in memory; the order of ``entries`` is the order of last use."""

    def __init__(self, now: Any) -> None:
        self.entries: OrderedDict[str, tuple[Any, datetime | None]] = OrderedDict()
        self._now = now

    def _live(self, key: str) -> bool:
        entry = self.entries.get(key)
        if entry is None:
            return False
        if entry[1] is not None and entry[1] <= self._now():
            del self.entries[key]
            return False
        return True

    def _put(self, key: str, value: Any, ttl_s: float | None) -> None:
        check_value(check_key(key), value)
        ttl = check_ttl(ttl_s)
        self.entries[key] = (value, None if ttl is None else self._now() + timedelta(seconds=ttl))
        self.entries.move_to_end(key)

    async def delete(self, key: str) -> bool:
        return self._live(key) and self.entries.pop(key, None) is not None

    async def list(self, prefix: str = "", *, limit: int = 1000) -> dict[str, Any]:
        check_limit(limit)
        keys = sorted(k for k in list(self.entries) if k.startswith(prefix) and self._live(k))
        return {k: self.entries[k][0] for k in keys[:limit]}


class MemoryStateMap(_MemoryKeys):
    """``BoundedMap`` in memory."""

    def __init__(self, name: str, max_entries: int, now: Any) -> None:
        check_bound(name, max_entries)
        super().__init__(now)
        self.name, self.max_entries, self.dropped_count = name, max_entries, 0

    async def get(self, key: str, default: Any = None) -> Any:
        if not self._live(key):
            return default
        self.entries.move_to_end(key)
        return self.entries[key][0]

    async def set(self, key: str, value: Any, *, ttl_s: float | None = None) -> None:
        self._put(key, value, ttl_s)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
            self.dropped_count += 1

    async def size(self) -> int:
        return sum(1 for k in list(self.entries) if self._live(k))

    async def dropped(self) -> int:
        return self.dropped_count


class MemoryStateStore(_MemoryKeys):
    """``KeyedStateStore`` in memory (``values`` shows the live plain keys; maps are in ``maps``).

    ``now`` is the time source for TTLs (a test passes its own to move time)."""

    def __init__(self, now: Any = None) -> None:
        super().__init__(now or (lambda: datetime.now(UTC)))
        self.maps: dict[str, MemoryStateMap] = {}

    @property
    def values(self) -> dict[str, Any]:
        return {k: v for k, (v, _) in self.entries.items()}

    async def get(self, key: str, default: Any = None) -> Any:
        return self.entries[key][0] if self._live(key) else default

    async def set(self, key: str, value: Any, *, ttl_s: float | None = None) -> None:
        self._put(key, value, ttl_s)

    def map(self, name: str, *, max_entries: int) -> MemoryStateMap:
        """The same map object for the same name (as the database one shares its rows)."""
        existing = self.maps.get(name)
        if existing is None or existing.max_entries != max_entries:
            fresh = MemoryStateMap(name, max_entries, self._now)
            if existing is not None:
                fresh.entries, fresh.dropped_count = existing.entries, existing.dropped_count
            self.maps[name] = existing = fresh
        return existing


def make_context(
    network: str,
    *,
    account_id: str = "acct-1",
    remote_user_id: str = "me",
    settings: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    sink: Any = None,
    state: Any = None,
    media: Any = None,
    progress: Any = None,
    hooks: Any = None,
) -> ConnectorContext:
    """A ``ConnectorContext`` wired to in-memory doors, for connector tests (``media``: the core's helper
    without storage or remote fetches unless given; ``progress``: a ``RecordingProgress`` unless given,
    read back as ``ctx.progress.reports``)."""
    extra: dict[str, Any] = {"media": media} if media is not None else {}
    if hooks is not None:
        extra["hooks"] = hooks
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
        progress=progress if progress is not None else RecordingProgress(),
        **extra,
    )
