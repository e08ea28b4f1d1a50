"""Ban avoidance: logins spaced with growing delays (kept across restarts), and sends paced with jitter.

WhatsApp bans accounts that behave like bots: reconnect storms, bursts of sends at machine regularity.
``Relogin`` spaces login attempts of one account: after ``n`` failures in a row the next attempt waits
``base * 2**(n-1)`` (capped, plus up to a quarter of random jitter) since the previous one; the record lives
in ``ctx.state`` so a bridge restarted in a loop is spaced too. From ``alert_after`` failures on, each failure
logs ``whatsapp.relogin_alert`` (an error an operator's alerting can match). A temporary ban's expiry is kept
as well: no login is attempted before it. ``SendPacer`` keeps at least ``interval`` between two sends of
the account plus a random extra of up to ``jitter``. Waits go through ``ctx.clock`` (tests use a fake one).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

STATE_KEY = "relogin"


class Relogin:
    def __init__(
        self, state: Any, clock: Any, log: Any, *, base_s: float, cap_s: float, alert_after: int
    ) -> None:
        self.state, self.clock, self.log = state, clock, log
        self.base_s, self.cap_s, self.alert_after = base_s, cap_s, alert_after
        self.rng = random.Random()

    def delay(self, failures: int) -> float:
        """The least time between the previous attempt and the next after ``failures`` failures in a row."""
        if failures <= 0:
            return 0.0
        ceiling = min(self.cap_s, self.base_s * 2 ** min(failures - 1, 30))
        return float(ceiling + self.rng.uniform(0, ceiling / 4))

    async def _record(self) -> dict[str, Any]:
        value = await self.state.get(STATE_KEY, None)
        return dict(value) if isinstance(value, dict) else {"failures": 0, "last": 0.0, "not_before": 0.0}

    async def before_attempt(self) -> float:
        """Wait until the next login is allowed; returns how long it waited. Records the attempt."""
        record = await self._record()
        now = self.clock.now().timestamp()
        due = max(
            float(record.get("last", 0.0)) + self.delay(int(record.get("failures", 0))),
            float(record.get("not_before", 0.0)),
        )
        wait = max(0.0, due - now)
        if wait > 0:
            self.log.info("whatsapp.relogin_wait", wait_s=round(wait, 1), failures=record.get("failures", 0))
            await self.clock.sleep(wait)
        record["last"] = self.clock.now().timestamp()
        await self.state.set(STATE_KEY, record)
        return float(wait)

    async def failed(self, reason: str, *, not_before: float | None = None) -> int:
        record = await self._record()
        record["failures"] = int(record.get("failures", 0)) + 1
        if not_before is not None:
            record["not_before"] = not_before
        await self.state.set(STATE_KEY, record)
        failures = int(record["failures"])
        if failures >= self.alert_after:
            self.log.error(
                "whatsapp.relogin_alert",
                failures=failures,
                reason=reason,
                next_wait_s=round(self.delay(failures), 1),
                hint="WhatsApp keeps refusing or dropping this account's login; check the phone and the logs "
                "before it is flagged for reconnecting too often",
            )
        else:
            self.log.warning("whatsapp.relogin_failed", failures=failures, reason=reason)
        return failures

    async def succeeded(self) -> None:
        record = await self._record()
        if record.get("failures") or record.get("not_before"):
            record.update(failures=0, not_before=0.0)
            await self.state.set(STATE_KEY, record)


class SendPacer:
    def __init__(self, clock: Any, *, interval_s: float, jitter_s: float) -> None:
        self.clock, self.interval_s, self.jitter_s = clock, interval_s, jitter_s
        self.rng = random.Random()
        self.lock = asyncio.Lock()
        self.last = float("-inf")

    async def wait(self) -> None:
        """Return when the account may send again (sends of one account go one at a time)."""
        async with self.lock:
            gap = self.interval_s + self.rng.uniform(0, self.jitter_s)
            wait = self.last + gap - self.clock.monotonic()
            if wait > 0:
                await self.clock.sleep(wait)
            self.last = self.clock.monotonic()
