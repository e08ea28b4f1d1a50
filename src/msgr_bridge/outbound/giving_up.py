"""When the delivery worker stops waiting for a network's rate limit and dead-letters a send instead.

A rate-limited send waits without using an attempt (``RateLimited.retry_after`` pauses its bucket), but a
send the network will never take must not hold its conversation forever. It is given up when the network
asks for a single wait longer than ``max_rate_limit_wait_s``, when its waits add up to more than that, or
when the network refused it ``max_identical_rate_limits`` times in a row with the same error. The entry's
closed attempt rows (outcome ``rate_limited``, with the error) are the memory, so this holds across
restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..store.repos.outbox import AttemptRecord
from .delivery_types import DeliverySettings


def rate_limit_verdict(
    settings: DeliverySettings,
    retry_after: float,
    error: str,
    earlier: Sequence[AttemptRecord],
    now: datetime,
) -> str | None:
    """Why a rate-limited send is given up (None: it waits and is tried again). ``earlier`` are the
    entry's attempt rows, oldest first (the open one, this attempt, is skipped)."""
    bound = settings.max_rate_limit_wait_s
    if retry_after > bound:
        return (
            f"the network asks to wait {retry_after:.0f}s, more than [outbound] max_rate_limit_wait_s "
            f"({bound:.0f}s): {error}"
        )
    streak: list[AttemptRecord] = []  # the refusals just before this one, newest first
    for attempt in reversed(earlier):
        if attempt.finished_at is None:
            continue
        if attempt.outcome != "rate_limited":
            break
        streak.append(attempt)
    same = 1
    for attempt in streak:
        if attempt.error != error:
            break
        same += 1
    if same >= settings.max_identical_rate_limits:
        return f"refused {same} times in a row with the same rate limit: {error}"
    if streak:
        waited = (now - streak[-1].started_at).total_seconds() + retry_after
        if waited > bound:
            return (
                f"rate limited for {waited:.0f}s in all, more than [outbound] max_rate_limit_wait_s "
                f"({bound:.0f}s): {error}"
            )
    return None
