"""Polling helpers for tests whose condition has no event to await (a row in a database, a state)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import anyio

Check = Callable[[], bool | Awaitable[bool]]


async def wait_until(check: Check, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Return once ``check()`` (sync or async) is true; ``TimeoutError`` after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(interval)
