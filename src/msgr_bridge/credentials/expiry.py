"""The expiry watcher: warn before an account's credentials run out, and never let them expire silently.

Every credential may carry an ``expires_at`` (``put(..., expires_at=...)``: an OAuth token's lifetime, a
session cookie's). ``ExpiryWatcher`` asks the credential store every ``interval`` seconds which secrets
expire within ``warn_before`` and, for each one:

* logs ``credentials.expiring`` (account, key, expires_at) as a warning, or ``credentials.expired`` as an
  error, once per credential and expiry date for the life of the process;
* counts it in ``msgr_credentials_expiring_total`` / ``msgr_credentials_expired_total``;
* records the soonest expiry on the account (``bridge_accounts.credentials_expire_at``);
* sets the account state ``credentials_expiring`` (or ``bad_credentials`` once expired) through the
  state setter it was given. An account already ``bad_credentials`` is left alone: that state says more.

The state is re-asserted on every check, because a reconnect sets the account ``connected`` again; when
the credential was renewed (rotated with a later expiry) and a ``current_state`` callback was given, the
account goes back to what the supervisor knows (``connected``, ...) at the next check.

The Bridge runs one watcher in its task group; ``[credentials] expiry_warn_before_s`` and
``expiry_check_interval_s`` configure it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import structlog
from anyio.abc import TaskStatus

from ..observability.metrics import CREDENTIALS_EXPIRED, CREDENTIALS_EXPIRING, Metrics
from ..schema import ConnectionState
from ..store.repos.accounts import AccountRepo
from .base import CredentialStore, ExpiringSecret

_log = structlog.get_logger("msgr_bridge.credentials.expiry")

StateSetter = Callable[[str, ConnectionState, str | None], Awaitable[None]]
"""``(account_id, state, reason)``: the Bridge's own state listener (it writes ``AccountRepo.set_state``)."""


@dataclass(frozen=True, slots=True)
class ExpiryFinding:
    """One credential found close to (or past) its expiry by a check."""

    account_id: str
    key: str
    expires_at: datetime
    expired: bool


class ExpiryWatcher:
    """Periodically checks credential expiry dates; see the module docs for what it does about them."""

    def __init__(
        self,
        credentials: CredentialStore,
        accounts: AccountRepo,
        set_state: StateSetter,
        *,
        warn_before: timedelta,
        interval: float = 3600.0,
        metrics: Metrics | None = None,
        current_state: Callable[[str], ConnectionState] | None = None,
        tenant: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if warn_before < timedelta(0):
            raise ValueError("warn_before must not be negative")
        if interval <= 0:
            raise ValueError("interval must be greater than 0")
        self.credentials = credentials
        self.accounts = accounts
        self.set_state = set_state
        self.warn_before = warn_before
        self.interval = interval
        self.metrics = metrics
        self.current_state = current_state
        self.tenant = tenant
        """Only this tenant's accounts are touched (None: every tenant's)."""
        self._now = clock
        self._reported: set[tuple[str, str, datetime, bool]] = set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check now, then every ``interval`` seconds until cancelled. A failed check is only logged."""
        task_status.started()
        while True:
            try:
                await self.check_once()
            except Exception as exc:  # the store or the database is down: try again next time
                _log.error("credentials.expiry_check_failed", error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(self.interval)

    async def check_once(self) -> list[ExpiryFinding]:
        """One check. Returns what was found for this bridge's accounts (soonest first), after logging,
        counting and setting their states."""
        now = self._now()
        found: list[ExpiringSecret] = await self.credentials.expiring_before(now + self.warn_before)
        findings = [ExpiryFinding(s.account_id, s.key, s.expires_at, s.expires_at <= now) for s in found]
        by_account: dict[str, list[ExpiryFinding]] = {}
        for f in findings:
            by_account.setdefault(f.account_id, []).append(f)
        mine: list[ExpiryFinding] = []
        for account_id, items in by_account.items():
            if await self._apply(account_id, items):
                mine += items
        for record in await self.accounts.list(self.tenant):
            if record.state == ConnectionState.CREDENTIALS_EXPIRING and record.id not in by_account:
                await self._lift(record.id)
        return sorted(mine, key=lambda f: f.expires_at)

    def _report(self, f: ExpiryFinding) -> None:
        marker = (f.account_id, f.key, f.expires_at, f.expired)
        if marker in self._reported:
            return
        self._reported.add(marker)
        if f.expired:
            _log.error(
                "credentials.expired",
                account=f.account_id,
                key=f.key,
                expires_at=f.expires_at.isoformat(),
                hint="relink the account (or rotate the credential) to bring it back",
            )
            if self.metrics is not None:
                self.metrics.add(CREDENTIALS_EXPIRED)
        else:
            _log.warning(
                "credentials.expiring",
                account=f.account_id,
                key=f.key,
                expires_at=f.expires_at.isoformat(),
                hint="renew the credential (relink the account) before it expires",
            )
            if self.metrics is not None:
                self.metrics.add(CREDENTIALS_EXPIRING)

    async def _apply(self, account_id: str, items: list[ExpiryFinding]) -> bool:
        """Report, record and set the state of one account; False when it is not this bridge's."""
        record = await self.accounts.get(account_id)
        if record is None or (self.tenant is not None and record.tenant != self.tenant):
            return False  # an account that no longer exists, or another bridge's: nothing to do here
        for f in items:
            self._report(f)
        soonest = min(f.expires_at for f in items)
        if record.credentials_expire_at is None or record.credentials_expire_at != soonest:
            await self.accounts.set_credentials_expiry(account_id, soonest)
        if record.state == ConnectionState.BAD_CREDENTIALS:
            return True
        expired = [f for f in items if f.expired]
        if expired:
            first = expired[0]
            state = ConnectionState.BAD_CREDENTIALS
            reason = f"credential {first.key!r} expired at {first.expires_at.isoformat()}"
        else:
            first = items[0]
            state = ConnectionState.CREDENTIALS_EXPIRING
            reason = f"credential {first.key!r} expires at {first.expires_at.isoformat()}"
        if record.state != state or record.state_reason != reason:
            await self.set_state(account_id, state, reason)
        return True

    async def _lift(self, account_id: str) -> None:
        """The credential was renewed: give the account back the state the supervisor knows."""
        await self.accounts.set_credentials_expiry(account_id, None)
        if self.current_state is not None:
            _log.info("credentials.renewed", account=account_id)
            await self.set_state(account_id, self.current_state(account_id), "credentials renewed")
