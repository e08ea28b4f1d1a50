"""Riding out a database outage: long-running loops (delivery, the event hub's tail) wait and retry instead
of ending the process.

``is_outage(exc)`` says whether an exception means "the database cannot be reached right now" (a refused or
dropped connection, a pool timeout, a server shutting down) rather than a bug or a refused statement.
``OutageGuard.retry(step, what)`` runs a database step until it succeeds, sleeping with capped exponential
backoff in between, and logs once when the outage starts (``database.unavailable``, an error) and once when
it ends (``database.recovered``, with how long it lasted): a ten-second outage is two log lines, not one per
retry. ``/ready`` answers false meanwhile on its own (it asks the database).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog
from sqlalchemy import exc as sa_exc

from ..backoff import Backoff
from ..errors import DatabaseError

log = structlog.get_logger("msgr_bridge.store")

T = TypeVar("T")


OUTAGE_SQLSTATES = ("57P01", "57P02", "57P03")
"""admin_shutdown, crash_shutdown, cannot_connect_now (and every class 08 "connection exception")."""


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable for now (retry later), not a refused statement.
    Looks through the chain of causes: SQLAlchemy wraps the driver's error, which wraps the socket's."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 20:
            continue
        seen.add(id(e))
        if isinstance(e, sa_exc.DBAPIError) and (
            e.connection_invalidated or isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return True
        if isinstance(e, sa_exc.TimeoutError | DatabaseError | OSError | ConnectionError):
            return True
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and (state.startswith("08") or state in OUTAGE_SQLSTATES):
            return True
        orig = getattr(e, "orig", None)
        todo.extend([e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None])
    return False


class OutageGuard:
    """Retries database steps through an outage; one ``database.unavailable`` log line per outage."""

    def __init__(self, component: str, *, base_s: float = 0.2, cap_s: float = 5.0) -> None:
        self.component = component
        self.backoff = Backoff(base_s=base_s, cap_s=cap_s)
        self.down_since: float | None = None
        self.outages = 0
        """Outages seen (for tests and metrics)."""

    @property
    def down(self) -> bool:
        return self.down_since is not None

    async def retry(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``step`` until it succeeds; anything that is not an outage is raised at once."""
        attempt = 0
        while True:
            try:
                result = await step()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.failed(exc, what)
                await anyio.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            self.succeeded()
            return result

    def failed(self, exc: BaseException, what: str) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.error(
                "database.unavailable",
                component=self.component,
                step=what,
                error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                note="retrying with backoff until the database answers again; nothing is dropped",
            )

    def succeeded(self) -> None:
        if self.down_since is not None:
            lasted = time.monotonic() - self.down_since
            self.down_since = None
            log.warning("database.recovered", component=self.component, outage_s=round(lasted, 1))
