"""The delivery worker's settings, counters and per-entry result (``delivery.py`` does the work)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..config import OutboundSection
from ..schema import SendResult
from ..store.repos.outbox import OutboxEntry
from .impersonation import Speaker
from .requests import OutboundRequest

Kind = Literal["sent", "retry", "release", "failed", "dead"]


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    max_attempts: int = 10
    base_backoff_s: float = 1.0
    max_backoff_s: float = 600.0
    batch_size: int = 200
    concurrency: int = 64
    """Conversations delivered at the same time."""
    idle_poll_s: float = 10.0
    """How often an idle worker reads the outbox's due times, to find work another process queued
    (``msgr-bridge outbox retry``, another worker). Work queued in this process wakes it at once, and the
    due times it knows of (retries, holds, scheduled sends) are waited for exactly (``waking.py``)."""
    send_timeout_s: float = 60.0
    """A connector call that takes longer counts as a transient failure."""
    recover_after_s: float = 0.0
    """``sending`` entries older than this are recovered. 0: all of them, once, at start (one worker
    process). With several worker processes, set it above ``send_timeout_s``: recovery then runs
    periodically and never takes an entry another live worker is sending."""
    echo_grace_s: float = 10.0
    """How long a recovered send waits for its echo before it is sent again (non-deduping networks)."""
    wait_retry_s: float = 2.0
    """How soon an entry waiting for its account to connect is looked at again."""
    inline_wait_max_s: float = 1.0
    """Rate-limit waits up to this long are slept through; longer ones put the entry back in the queue."""
    max_rate_limit_wait_s: float = 3600.0
    """A send the network keeps refusing with a rate limit is dead-lettered once its waits add up to more
    than this (or the network asks for a longer wait at once)."""
    max_identical_rate_limits: int = 20
    """... or once the network refused it this many times in a row with the same rate-limit error."""

    @classmethod
    def from_config(cls, section: OutboundSection, **overrides: float) -> DeliverySettings:
        return cls(
            max_attempts=section.max_attempts,
            base_backoff_s=float(section.base_backoff_s),
            max_backoff_s=float(section.max_backoff_s),
            max_rate_limit_wait_s=float(section.max_rate_limit_wait_s),
            max_identical_rate_limits=section.max_identical_rate_limits,
            **overrides,  # type: ignore[arg-type]
        )


@dataclass
class DeliveryStats:
    """Counters (for metrics and /health)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    rate_limited: int = 0
    waited: int = 0
    failed: int = 0
    dead_lettered: int = 0
    recovered: int = 0
    echo_matched: int = 0


@dataclass(slots=True)
class Result:
    """What happened to one claimed entry; committed as soon as it is known (``commits.GroupCommit``)."""

    entry: OutboxEntry
    kind: Kind
    network: str = ""
    error: str | None = None
    until: datetime | None = None
    outcome: str | None = None
    """For ``release``: the attempt row's outcome (None: nothing was tried, the row is removed). For
    ``dead``: ``rate_limited`` when the network's rate limit never let the send pass."""
    result: SendResult | None = None
    request: OutboundRequest | None = None
    speaker: Speaker | None = None
    echo: bool = False
    """Sent according to a stored echo (after a crash): nothing new to store."""
