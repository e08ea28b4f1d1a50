"""Import progress: how a connector tells the core how far its history import or catch-up got.

A connector calls ``ctx.progress.report`` as it pages a conversation's history::

    ctx.progress.report(channel_id, done=len(fetched), total=None, phase="history")
    ...
    ctx.progress.report(channel_id, done=len(fetched), phase="history", finished=True)

``report`` is synchronous and returns at once: it never waits for the database or the event stream. The
core (``msgr_bridge.sync.progress``) keeps the latest report per conversation, publishes at most one
update per conversation a second on the event stream (a ``finished`` report always goes out), stores it
so it survives a restart, and shows it in ``GET /v1/accounts/{id}`` and ``msgr-bridge accounts list``.

``RecordingProgress`` is the default of a context built by hand (tests): it records every call, bounded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from ..schema import SyncPhase
from .state import MAX_KEY_CHARS

MAX_RECORDED = 10_000
"""The most calls ``RecordingProgress`` keeps (the oldest go first)."""


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """One ``report`` call, checked."""

    conversation_id: str
    done: int
    total: int | None
    phase: SyncPhase
    finished: bool


class ProgressReporter(Protocol):
    """``ctx.progress``: where a connector reports its history import and catch-up progress."""

    def report(
        self,
        conversation_id: str,
        *,
        done: int,
        total: int | None = None,
        phase: SyncPhase | str = SyncPhase.HISTORY,
        finished: bool = False,
    ) -> None:
        """Record how far the import of ``conversation_id`` (the network's id) got; never blocks."""
        ...


def check_report(
    conversation_id: str, done: int, total: int | None, phase: SyncPhase | str, finished: bool
) -> ProgressReport:
    """The report, or a ``ValueError`` that says which argument is wrong."""
    if not isinstance(conversation_id, str) or not conversation_id or len(conversation_id) > MAX_KEY_CHARS:
        raise ValueError(
            f"progress: conversation_id must be a string of 1 to {MAX_KEY_CHARS} characters, "
            f"got {conversation_id[:40] if isinstance(conversation_id, str) else conversation_id!r}"
        )
    if not isinstance(done, int) or isinstance(done, bool) or done < 0:
        raise ValueError(f"progress: done must be a count (int >= 0), got {done!r}")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        raise ValueError(f"progress: total must be None or a count (int >= 0), got {total!r}")
    try:
        checked = SyncPhase(phase)
    except ValueError:
        known = ", ".join(p.value for p in SyncPhase)
        raise ValueError(f"progress: phase must be one of {known}, got {phase!r}") from None
    return ProgressReport(conversation_id, done, total, checked, bool(finished))


class RecordingProgress:
    """Records every report (the last ``MAX_RECORDED``), for connector tests and hand-built contexts."""

    def __init__(self, max_recorded: int = MAX_RECORDED) -> None:
        self.reports: deque[ProgressReport] = deque(maxlen=max_recorded)

    def report(
        self,
        conversation_id: str,
        *,
        done: int,
        total: int | None = None,
        phase: SyncPhase | str = SyncPhase.HISTORY,
        finished: bool = False,
    ) -> None:
        self.reports.append(check_report(conversation_id, done, total, phase, finished))

    def of(self, conversation_id: str) -> list[ProgressReport]:
        """The reports about one conversation, in order."""
        return [r for r in self.reports if r.conversation_id == conversation_id]

    def finished(self) -> set[str]:
        """The conversations reported finished."""
        return {r.conversation_id for r in self.reports if r.finished}
