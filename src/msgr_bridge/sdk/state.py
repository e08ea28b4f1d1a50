"""Keyed connector state: what ``ctx.state`` offers beyond whole-value ``get``/``set``.

A connector keeps small facts per account here instead of owning tables or files::

    await ctx.state.set("sync_token", token)                 # persisted at once
    await ctx.state.set("probe:room-1", True, ttl_s=300)      # gone after five minutes
    await ctx.state.list("probe:")                           # {"probe:room-1": True}
    await ctx.state.delete("probe:room-1")

    reactions = ctx.state.map("reactions", max_entries=5_000)
    await reactions.set(remote_id, {"alice": ["👍"]})         # written key by key, never as one blob
    await reactions.get(remote_id)                           # a read counts as a use
    await reactions.dropped()                                # entries dropped to keep the bound

Every write goes to the database by itself, so a crash loses nothing already written, and a bounded map
drops its least recently used keys (counting them) so it never grows past ``max_entries``, across restarts
too. Values are JSON (``TypeError`` names the key otherwise). Expired keys read as absent and are deleted
by later writes to the same namespace.

``msgr_bridge.store.repos.connector_state.AccountState`` is the database implementation the bridge hands
connectors; ``msgr_bridge.testing.fakes.MemoryStateStore`` is an in-memory one for connector tests.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

MAX_MAP_ENTRIES = 1_000_000
"""The largest bound a map may ask for (a bound is what keeps state from growing without limit)."""

MAX_LIST = 10_000
"""The most keys one ``list`` call returns."""


class BoundedMap(Protocol):
    """A named map of at most ``max_entries`` keys; the least recently used (read or written) goes first."""

    name: str
    max_entries: int

    async def get(self, key: str, default: Any = None) -> Any: ...

    async def set(self, key: str, value: Any, *, ttl_s: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def list(self, prefix: str = "", *, limit: int = 1000) -> dict[str, Any]: ...

    async def size(self) -> int: ...

    async def dropped(self) -> int:
        """How many entries were dropped to keep the bound, since the map was first used."""
        ...


class KeyedStateStore(Protocol):
    """Persisted JSON values for one account of one connector (sync tokens, cursors, small maps)."""

    async def get(self, key: str, default: Any = None) -> Any: ...

    async def set(self, key: str, value: Any, *, ttl_s: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        ...

    async def list(self, prefix: str = "", *, limit: int = 1000) -> dict[str, Any]:
        """Keys starting with ``prefix`` (exactly, case-sensitive) and their values, in key order."""
        ...

    def map(self, name: str, *, max_entries: int) -> BoundedMap: ...


MAX_KEY_CHARS = 512
"""Longest state key (PostgreSQL cannot index a key of many kilobytes): hash longer network ids first."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"a connector state key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(
            f"a connector state key is at most {MAX_KEY_CHARS} characters, got {len(key)} "
            f"({key[:40]!r}...): hash long network ids into the key (hashlib.sha256(...).hexdigest())"
        )
    return key


def check_value(key: str, value: Any) -> None:
    """Refuse what cannot be stored as JSON, naming the key."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"connector state {key!r} must be JSON-serialisable: {exc}") from None


def check_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is not None and not ttl_s > 0:
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    return ttl_s


def check_bound(name: str, max_entries: int) -> None:
    if not isinstance(max_entries, int) or not 1 <= max_entries <= MAX_MAP_ENTRIES:
        raise ValueError(
            f"map {name!r}: max_entries must be between 1 and {MAX_MAP_ENTRIES}, got {max_entries!r}"
        )
    if not name or ":" in name:
        raise ValueError(f"a map name must be non-empty and contain no ':', got {name!r}")


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIST:
        raise ValueError(f"limit must be between 1 and {MAX_LIST}, got {limit!r}")
    return limit


def map_namespace(namespace: str, name: str) -> str:
    """Where a map's keys live: its own namespace next to the connector's (``xmpp:map:reactions``)."""
    return f"{namespace}:map:{name}"
