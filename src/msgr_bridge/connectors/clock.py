"""The real clock handed to connectors (tests may pass their own ``Clock``)."""

from __future__ import annotations

import time
from datetime import datetime

import anyio

from ..schema import utcnow


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
